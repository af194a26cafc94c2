"""One benchmark client for any OpenAI-compatible server (tiller serve, transformers
serve): C concurrent streaming chat clients, each sending REQUESTS requests from the
prompt list in turn; prints one JSON line with aggregate output tokens/s, time to first
token and inter-token latency percentiles (seconds).

    python scripts/bench_serve_client.py BASE_URL MODEL PROMPTS.jsonl CONCURRENCY REQUESTS MAX_TOKENS
"""

import json
import statistics
import sys
import threading
import time

import openai

base, model, prompts_path, conc, per_client, max_tokens = sys.argv[1:7]
conc, per_client, max_tokens = int(conc), int(per_client), int(max_tokens)
prompts = []
with open(prompts_path) as f:
    for line in f:
        line = line.strip()
        if line:
            row = json.loads(line)
            p = row.get("prompt", row.get("messages"))
            prompts.append(p if isinstance(p, str) else p[-1]["content"])
client = openai.OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=3600)
ttft, itl, tokens, failures = [], [], [], []
lock = threading.Lock()


def one(prompt):
    start = time.perf_counter()
    last, first, count = None, None, 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if any(c.delta.content for c in chunk.choices):
            count += 1
            if first is None:
                first = now - start
            else:
                with lock:
                    itl.append(now - last)
            last = now
    with lock:
        if first is not None:
            ttft.append(first)
        tokens.append(usage if usage is not None else count)


def worker(i):
    for k in range(per_client):
        try:
            one(prompts[(i * per_client + k) % len(prompts)])
        except Exception as e:  # noqa: BLE001 - a failed request is counted, not fatal
            with lock:
                failures.append(repr(e))


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


started = time.perf_counter()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - started
print(json.dumps({
    "concurrency": conc,
    "requests": len(tokens),
    "failures": len(failures),
    "first_failure": failures[0] if failures else None,
    "output_tokens": sum(tokens),
    "wall_s": round(wall, 2),
    "tokens_per_s": round(sum(tokens) / wall, 2),
    "ttft_p50_s": pct(ttft, 50),
    "ttft_p99_s": pct(ttft, 99),
    "itl_p50_s": pct(itl, 50),
    "itl_p99_s": pct(itl, 99),
    "mean_itl_s": statistics.mean(itl) if itl else None,
}))
