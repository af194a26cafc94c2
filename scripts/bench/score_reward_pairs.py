"""Scores held-out preference pairs with several reward models through one code path
(transformers, TRL's own tokenisation of conversational rows) and compares them pair by
pair: accuracy with its Wilson 95% interval, mean margin, and the exact McNemar test of
each model against the first on the pairs where exactly one of the two ranks correctly.
Prints a Markdown table and writes every pair's rewards and the figures as JSON.

usage: score_reward_pairs.py EVAL_JSONL OUT_JSON NAME=MODEL_DIR [NAME=MODEL_DIR ...]
"""
import json
import math
import sys

import torch


def wilson(k, n, z=1.959963984540054):
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value: the binomial test of b against b + c at 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@torch.no_grad()
def rewards(model_dir, rows):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.data_utils import _tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    out = []
    for i, row in enumerate(rows):
        pair = []
        for side in ("chosen", "rejected"):
            ids = _tokenize(tokenizer, row["prompt"] + row[side])["input_ids"]
            # One sequence at a time, unpadded: the score is the last token's.
            pair.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
        out.append(pair)
        if (i + 1) % 50 == 0:
            print(f"  {model_dir}: {i + 1}/{len(rows)} pairs", file=sys.stderr, flush=True)
    return out


def main():
    eval_path, out_path, *named = sys.argv[1:]
    rows = [json.loads(line) for line in open(eval_path, encoding="utf-8")]
    models = [spec.split("=", 1) for spec in named]
    scored = {name: rewards(path, rows) for name, path in models}
    correct = {name: [c > r for c, r in pairs] for name, pairs in scored.items()}
    first = models[0][0]
    figures = {}
    for name, _ in models:
        k, n = sum(correct[name]), len(rows)
        b = sum(x and not y for x, y in zip(correct[name], correct[first]))
        c = sum(y and not x for x, y in zip(correct[name], correct[first]))
        figures[name] = {
            "accuracy": k / n,
            "correct": k,
            "n": n,
            "wilson95": wilson(k, n),
            "mean_margin": sum(c_ - r_ for c_, r_ in scored[name]) / n,
            # Against the first model: pairs only this one ranks right, only the first does.
            "only_this_right": b,
            "only_first_right": c,
            "mcnemar_p": mcnemar_exact(b, c),
        }
    json.dump({"figures": figures, "rewards": scored}, open(out_path, "w"), indent=1)
    print(f"| model | accuracy (n = {len(rows)}) | Wilson 95% | mean margin | vs {first}: only this / only {first} right, exact McNemar p |")
    print("|---|---:|---:|---:|---:|")
    for name, f in figures.items():
        lo, hi = f["wilson95"]
        versus = "—" if name == first else f"{f['only_this_right']} / {f['only_first_right']}, p = {f['mcnemar_p']:.3g}"
        print(f"| {name} | {100 * f['accuracy']:.1f}% | [{100 * lo:.1f}%, {100 * hi:.1f}%] | {f['mean_margin']:.3f} | {versus} |")


if __name__ == "__main__":
    main()
