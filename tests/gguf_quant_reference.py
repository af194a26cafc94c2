"""Re-quantizes the tensors of an f32 GGUF with reference quantizers and compares them byte
for byte with another GGUF's (tests/gguf_export.rs runs it with .venv-test's python):

    python tests/gguf_quant_reference.py F32.gguf QUANTIZED.gguf

Q8_0 uses gguf-py's own quantizer. gguf-py has no Q4_K quantizer, so Q4_K uses
`q4_k_reference` below: llama.cpp's `quantize_row_q4_K_ref` (ggml-quants.c) written in
numpy, vectorised over sub-blocks but with every sum taken in the C code's order and in
float32, so that its bytes are the C function's. Prints JSON: {"same": {type: count},
"differ": [names], "rmse": {name: relative RMSE of the dequantized tensor}}.
"""

import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

f32 = np.float32


def nearest(v):
    """ggml's nearest_int: round half to even."""
    return np.rint(v).astype(np.int32)


def search(xs, w, nmax=15, rmin=-1.0, rdelta=0.1, nstep=20):
    """make_qkx2_quants for every row of xs (sub-blocks of 32) at once: (scale, min, L)."""
    n = xs.shape[1]
    lo, hi = xs[:, 0].copy(), xs[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = sum_w * xs[:, 0]
    for i in range(1, n):
        lo = np.minimum(lo, xs[:, i])
        hi = np.maximum(hi, xs[:, i])
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * xs[:, i]
    lo = np.minimum(lo, f32(0))
    flat = hi == lo
    span = np.where(flat, f32(1), hi - lo)
    iscale = f32(nmax) / span
    scale = f32(1) / iscale
    L = np.clip(nearest(iscale[:, None] * (xs - lo[:, None])), 0, nmax).astype(f32)
    best = np.zeros(len(xs), f32)
    for i in range(n):
        diff = scale * L[:, i] + lo - xs[:, i]
        best = best + w[:, i] * (diff * diff)
    for step in range(nstep + 1):
        # As in the C code, a better grid's min moves the range the next grids divide.
        span = np.where(flat, f32(1), hi - lo)
        iscale = (f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / span
        aux = np.clip(nearest(iscale[:, None] * (xs - lo[:, None])), 0, nmax).astype(f32)
        sl = np.zeros(len(xs), f32)
        sl2 = np.zeros(len(xs), f32)
        sxl = np.zeros(len(xs), f32)
        for i in range(n):
            sl = sl + w[:, i] * aux[:, i]
            sl2 = sl2 + w[:, i] * aux[:, i] * aux[:, i]
            sxl = sxl + w[:, i] * aux[:, i] * xs[:, i]
        det = sum_w * sl2 - sl * sl
        ok = det > 0
        safe = np.where(ok, det, f32(1))
        this_scale = (sum_w * sxl - sum_x * sl) / safe
        this_min = (sl2 * sum_x - sl * sxl) / safe
        pos = this_min > 0
        this_min = np.where(pos, f32(0), this_min)
        this_scale = np.where(pos, sxl / np.where(sl2 > 0, sl2, f32(1)), this_scale)
        err = np.zeros(len(xs), f32)
        for i in range(n):
            diff = this_scale * aux[:, i] + this_min - xs[:, i]
            err = err + w[:, i] * (diff * diff)
        better = ok & (err < best) & ~flat
        L = np.where(better[:, None], aux, L)
        best = np.where(better, err, best)
        scale = np.where(better, this_scale, scale)
        lo = np.where(better, this_min, lo)
    scale = np.where(flat, f32(0), scale)
    L = np.where(flat[:, None], f32(0), L)
    return scale, -lo, L


def q4_k_reference(x):
    """quantize_row_q4_K_ref of float32 values (a multiple of 256): the block bytes."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nb = x.size // 256
        xs = x.reshape(nb * 8, 32).astype(f32)
        sum_x2 = np.zeros(len(xs), f32)
        for i in range(32):
            sum_x2 = sum_x2 + xs[:, i] * xs[:, i]
        av_x = np.sqrt(sum_x2 / f32(32))
        w = av_x[:, None] + np.abs(xs)
        scales, mins, L = search(xs, w)
        scales, mins, L = scales.reshape(nb, 8), mins.reshape(nb, 8), L.reshape(nb, 8, 32)
        max_scale = np.maximum(scales.max(axis=1), f32(0))
        max_min = np.maximum(mins.max(axis=1), f32(0))
        inv_scale = np.where(max_scale > 0, f32(63) / max_scale, f32(0))
        inv_min = np.where(max_min > 0, f32(63) / max_min, f32(0))
        ls = np.minimum(nearest(inv_scale[:, None] * scales).astype(np.uint8), 63)
        lm = np.minimum(nearest(inv_min[:, None] * mins).astype(np.uint8), 63)
        d = (max_scale / f32(63)).astype(np.float16)
        dmin = (max_min / f32(63)).astype(np.float16)
        sub_d = d.astype(f32)[:, None] * ls.astype(f32)
        sub_m = dmin.astype(f32)[:, None] * lm.astype(f32)
        xb = xs.reshape(nb, 8, 32)
        requant = np.clip(
            nearest((xb + sub_m[:, :, None]) / np.where(sub_d == 0, f32(1), sub_d)[:, :, None]),
            0,
            15,
        ).astype(f32)
        L = np.where((sub_d == 0)[:, :, None], L, requant).astype(np.uint8)
    packed = np.zeros((nb, 12), np.uint8)
    packed[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (ls[:, 4:8] & 0x0F) | ((lm[:, 4:8] & 0x0F) << 4)
    pairs = L.reshape(nb, 4, 2, 32)
    qs = (pairs[:, :, 0, :] | (pairs[:, :, 1, :] << 4)).reshape(nb, 128)
    head = np.concatenate([d.reshape(nb, 1).view(np.uint8), dmin.reshape(nb, 1).view(np.uint8)], axis=1)
    return np.concatenate([head, packed, qs], axis=1).reshape(-1)


def main():
    source = {t.name: t for t in GGUFReader(sys.argv[1]).tensors}
    same, differ, rmse = {}, [], {}
    for t in GGUFReader(sys.argv[2]).tensors:
        src = np.asarray(source[t.name].data, dtype=f32)
        if t.tensor_type == T.F32:
            ref = src.view(np.uint8).reshape(-1)
        elif t.tensor_type == T.Q4_K:
            ref = q4_k_reference(src.reshape(-1))
        else:
            ref = np.ascontiguousarray(quantize(src, t.tensor_type)).view(np.uint8).reshape(-1)
        ours = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
        if np.array_equal(ref, ours):
            same[t.tensor_type.name] = same.get(t.tensor_type.name, 0) + 1
        else:
            differ.append(t.name)
        if t.tensor_type != T.F32:
            back = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
            orig = src.astype(np.float64).reshape(-1)
            rmse[t.name] = float(np.sqrt(np.mean((back - orig) ** 2) / np.mean(orig**2)))
    print(json.dumps({"same": same, "differ": differ, "rmse": rmse}))


if __name__ == "__main__":
    main()
