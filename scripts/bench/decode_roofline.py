"""The matrix-multiply ceiling of decoding a Llama-family model on this CPU: times one
decode step's weight matmuls alone (every layer's q/k/v/o and gate/up/down, and the LM
head; no attention, norms or sampling) for a batch of BATCH rows, with THREADS torch
threads, and prints the tokens/s no engine can beat with those kernels. Reads the shapes
from the model's config.json; weights are random (the time does not depend on values).

usage: decode_roofline.py MODEL_DIR [BATCH=32] [THREADS=1] [DTYPE=float32]
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def main():
    model_dir = sys.argv[1]
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    dtype = getattr(torch, sys.argv[4] if len(sys.argv) > 4 else "float32")
    torch.set_num_threads(threads)
    c = json.load(open(f"{model_dir}/config.json"))
    h, i, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    d = c.get("head_dim") or h // heads
    shapes = [(heads * d, h), (kv * d, h), (kv * d, h), (h, heads * d), (i, h), (i, h), (h, i)]
    weights = [torch.randn(o, n, dtype=dtype) for o, n in shapes]
    inputs = [torch.randn(batch, n, dtype=dtype) for _, n in shapes]
    head = torch.randn(vocab, h, dtype=dtype)
    x = torch.randn(batch, h, dtype=dtype)

    def step():
        for _ in range(layers):
            for w, a in zip(weights, inputs):
                F.linear(a, w)
        F.linear(x, head)

    with torch.no_grad():
        step()
        repeats = 5
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        seconds = (time.perf_counter() - start) / repeats
    macs = layers * sum(o * n for o, n in shapes) + vocab * h
    print(json.dumps({
        "batch": batch,
        "threads": threads,
        "dtype": str(dtype).removeprefix("torch."),
        "matmul_seconds_per_step": seconds,
        "gflops": 2 * macs * batch / seconds / 1e9,
        "mflop_per_token": 2 * macs / 1e6,
        "ceiling_tokens_per_s": batch / seconds,
    }))


if __name__ == "__main__":
    main()
