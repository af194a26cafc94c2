"""transformers' side of `tiller bench generation`: the same model directory, prompts,
batch sizes and settings (greedy, exactly N new tokens, no EOS stop). Prints JSON."""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain photosynthesis briefly.",
    "Give three tips for better sleep.",
    "What is a prime number?",
    "Describe a cat to a child.",
    "How do airplanes fly?",
    "Name five fruits and one fact about each of them.",
    "What does a compiler do?",
    "Summarize the plot of Cinderella in two sentences.",
    "Why is the sky blue?",
    "How do I boil an egg?",
    "What is machine learning?",
    "Write a short poem about rain on a tin roof.",
    "What are the planets of the solar system?",
    "How does a bicycle work?",
]

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch-sizes", default="1,16")
p.add_argument("--max-new-tokens", type=int, default=64)
p.add_argument("--dtype", default="f32")
args = p.parse_args()

dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
tok = AutoTokenizer.from_pretrained(args.model)
tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).eval()
texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True) for q in PROMPTS]

figures = []
for b in [int(x) for x in args.batch_sizes.split(",")]:
    batch = [texts[i % len(texts)] for i in range(b)]
    # Forward: right padding, as tiller's forward benchmark.
    tok.padding_side = "right"
    enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
    real = int(enc.attention_mask.sum())
    with torch.no_grad():
        model(**enc)
        start = time.perf_counter()
        for _ in range(3):
            model(**enc)
        forward = real * 3 / (time.perf_counter() - start)
    tok.padding_side = "left"
    enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
    settings = dict(do_sample=False, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                    pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        model.generate(**tok(batch[:1], return_tensors="pt", add_special_tokens=False), **{**settings, "max_new_tokens": 4, "min_new_tokens": 4})
        start = time.perf_counter()
        out = model.generate(**enc, **settings)
        elapsed = time.perf_counter() - start
    new = (out.shape[1] - enc.input_ids.shape[1]) * b
    figures.append({"engine": "transformers", "batch_size": b, "forward_tokens_per_s": forward,
                    "generate_tokens_per_s": new / elapsed})
print(json.dumps(figures))
