#!/usr/bin/env python3
"""Checks that no training prompt the project ships is a near-duplicate of an evaluation
prompt (standard library only).

A gain measured on an evaluation suite means something only if the model never trained on
that suite's prompts, or on light rewrites of them. The generators (`make_sets.py`,
`make_safety_sets.py`) call `check` before they write, and `data/tests/overlap.rs` runs this
script on the shipped files, so a prompt added by hand is caught too.

Near-duplicate, on normalised text (lower case, punctuation dropped, whitespace collapsed):
- the same text, or
- word 3-gram Jaccard similarity >= 0.7 (with fewer than three words: the same words).

3-grams catch reworded copies ("Give detailed instructions for making X at home" ->
"Give me detailed instructions on making X at home") while two prompts that only share a
frame ("How do I make a bomb" / "How do I make a cake": 0.6) stay apart.

Evaluation prompts: the project's probes (`datasets/eval/`), and the public suites in
`../shared/datasets` when that folder is there (HarmBench, CatQA, XSTest, CoCoNot).

    python3 datasets/overlap.py [--shared DIR] [--train FILE ...]

exits 1 and lists every near-duplicate pair (training file and line, evaluation file and
row) when there is one.
"""

import argparse
import csv
import functools
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared/datasets"
THRESHOLD = 0.7
N = 3

# The shipped training files: every prompt a trainer reads from them.
TRAIN_FILES = [
    "sft/train.jsonl", "sft/eval.jsonl", "preferences/train.jsonl", "preferences/eval.jsonl",
    "prompts/train.jsonl", "unpaired/train.jsonl", "unpaired/eval.jsonl",
    "safety/sft.jsonl", "safety/preferences.jsonl", "safety/preferences_eval.jsonl",
]


def normalize(text):
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def grams(norm):
    words = norm.split()
    if len(words) < N:
        return {tuple(words)}
    return {tuple(words[i:i + N]) for i in range(len(words) - N + 1)}


def similarity(a, b):
    """Word 3-gram Jaccard similarity of two gram sets."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def user_text(row):
    """The user turns of a training row, in any of the shipped shapes."""
    for key in ("messages", "prompt"):
        value = row.get(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [m["content"] for m in value if m.get("role") == "user"]
    return []


def training_prompts(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    for text in user_text(json.loads(line)):
                        yield f"{path}:{line_no}", text


def eval_prompts(shared):
    """(where, prompt) for every evaluation prompt that can be found."""
    for path in sorted((HERE / "eval").glob("*.jsonl")):
        if path.name == "bbq.jsonl":
            continue  # BBQ rows are multiple-choice contexts, not prompts a trainer could see
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{line_no}", json.loads(line)["prompt"]
    if shared is None or not shared.is_dir():
        return
    for path, column in [
        (shared / "harmbench/harmbench_behaviors_text_all.csv", "Behavior"),
        (shared / "xstest-labeled/xstest_prompts.csv", "prompt"),
    ]:
        if path.exists():
            with open(path, encoding="utf-8", newline="") as f:
                for row_no, row in enumerate(csv.DictReader(f), 2):
                    yield f"{path}:{row_no}", row[column]
    catqa = shared / "catqa/catqa_english.json"
    if catqa.exists():
        data = json.loads(catqa.read_text(encoding="utf-8"))
        for category, subs in data.items():
            for sub, prompts in subs.items():
                for i, prompt in enumerate(prompts):
                    yield f"{catqa}:{category}/{sub}#{i}", prompt
    for name in ("coconot_eval.jsonl", "coconot_pref.jsonl"):
        path = shared / "coconot" / name
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if line.strip():
                        yield f"{path}:{line_no}", json.loads(line)["prompt"]


@functools.lru_cache(maxsize=None)
def eval_index(shared):
    """The evaluation prompts (where, normalised, grams) and an index from 3-gram to them."""
    index = {}
    evals = []
    for where, prompt in eval_prompts(shared):
        g = grams(normalize(prompt))
        evals.append((where, normalize(prompt), g))
        for gram in g:
            index.setdefault(gram, []).append(len(evals) - 1)
    return evals, index


def check(train, shared=SHARED):
    """Every (training where, eval where, similarity) pair at or above the threshold, and how
    many evaluation prompts were compared.

    `train` is a list of (where, prompt). Each training prompt is compared only with the
    evaluation prompts that share a 3-gram with it.
    """
    evals, index = eval_index(shared)
    hits = []
    for where, prompt in train:
        norm = normalize(prompt)
        g = grams(norm)
        candidates = {i for gram in g for i in index.get(gram, [])}
        for i in sorted(candidates):
            eval_where, eval_norm, eval_g = evals[i]
            score = 1.0 if norm == eval_norm else similarity(g, eval_g)
            if score >= THRESHOLD:
                hits.append((where, eval_where, score))
    return hits, len(evals)


def refuse_near_duplicates(path, rows):
    """Exits 1 before `path` is written if one of `rows` near-duplicates an evaluation prompt
    (what the generators call)."""
    train = [(f"{path} row {i}", text) for i, row in enumerate(rows, 1) for text in user_text(row)]
    fail_on(check(train)[0])


def fail_on(hits):
    """Exits 1 listing the near-duplicates, if any (the generators call this before writing)."""
    if hits:
        for train_where, eval_where, score in hits:
            print(f"near-duplicate ({score:.2f}): {train_where} ~ {eval_where}", file=sys.stderr)
        sys.exit(f"{len(hits)} training prompt(s) near-duplicate an evaluation prompt")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the public datasets folder (default: ../shared/datasets)")
    parser.add_argument("--train", type=Path, nargs="*",
                        help="training JSONL files (default: the shipped ones)")
    args = parser.parse_args()
    paths = args.train or [HERE / p for p in TRAIN_FILES]
    train = list(training_prompts(paths))
    hits, evaluated = check(train, args.shared)
    fail_on(hits)
    print(f"no near-duplicates: {len(train)} training prompts from {len(paths)} files "
          f"against {evaluated} evaluation prompts")


if __name__ == "__main__":
    main()
