"""Drives `tiller serve` with the official `openai` client, as users do; prints one JSON
object with what it saw, which tests/serve_openai.rs checks.

    python tests/serve_openai.py BASE_URL API_KEY MODEL MODE [PROMPT...]

MODE: `full` (everything, for the tiny model), `real` (the default model's subset),
`busy` (a second request while the only slot is taken), `disconnect` (a streaming
client that goes away), `one` (one greedy non-streamed answer, for the drain test),
`each` (MODEL is NAME,NAME,...: each one's greedy answer to PROMPT, and /v1/models).
"""

import json
import sys
import threading
import time

import urllib.error
import urllib.request

import openai

base, key, model, mode = sys.argv[1:5]
prompts = sys.argv[5:]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=600)
out = {}


def chat(content, **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


def stream_text(content, **kw):
    """Streams one chat answer; returns (text, finish_reason, chunk count, usage)."""
    text, finish, chunks, usage = "", None, 0, None
    for chunk in chat(content, stream=True, **kw):
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish, chunks, usage


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.response.json()
        return {
            "status": e.status_code,
            "error": body.get("error"),
            "retry_after": e.response.headers.get("retry-after"),
        }
    return None


def http(path, data=None, headers=None):
    """(status, body text) of a plain request, outside the openai client."""
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(name):
    text = http("/metrics")[1]
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


if mode in ("full", "real"):
    greedy = dict(temperature=0, max_tokens=12)
    whole = chat(prompts[0], **greedy)
    out["greedy"] = whole.choices[0].message.content
    out["greedy_finish"] = whole.choices[0].finish_reason
    out["usage"] = whole.usage.model_dump()
    text, finish, chunks, usage = stream_text(
        prompts[0], stream_options={"include_usage": True}, **greedy
    )
    out["streamed"] = text
    out["streamed_finish"] = finish
    out["streamed_chunks"] = chunks
    out["streamed_usage"] = usage
    two = chat(prompts[0], n=2, temperature=1.0, seed=5, max_tokens=10)
    out["n2"] = [c.message.content for c in two.choices]
    out["n2_index"] = [c.index for c in two.choices]
    out["n2_usage"] = two.usage.model_dump()
    again = chat(prompts[0], n=2, temperature=1.0, seed=5, max_tokens=10)
    out["n2_again"] = [c.message.content for c in again.choices]
    # A stop string taken from the greedy answer itself.
    stop = out["greedy"][2:4]
    out["stop"] = stop
    stopped = chat(prompts[0], stop=[stop], **greedy)
    out["stopped"] = stopped.choices[0].message.content
    out["stopped_finish"] = stopped.choices[0].finish_reason
    out["stopped_streamed"] = stream_text(prompts[0], stop=stop, **greedy)[0]
    lp = chat(prompts[0], logprobs=True, top_logprobs=3, **greedy)
    content = lp.choices[0].logprobs.content
    out["logprobs"] = [
        {"token": t.token, "logprob": t.logprob, "top": [a.logprob for a in t.top_logprobs],
         "top_tokens": [a.token for a in t.top_logprobs]}
        for t in content
    ]
    out["logprobs_text"] = lp.choices[0].message.content
    done = client.completions.create(
        model=model, prompt=prompts[0], max_tokens=6, temperature=0, logprobs=2
    )
    out["completion"] = done.choices[0].text
    out["completion_logprobs"] = done.choices[0].logprobs.token_logprobs
    out["completion_usage"] = done.usage.model_dump()
    out["models"] = [m.id for m in client.models.list().data]

if mode == "full":
    out["errors"] = {
        "unknown_model": error_of(
            lambda: client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
        ),
        "temperature": error_of(lambda: chat("x", temperature=5)),
        "n": error_of(lambda: chat("x", n=0)),
        "messages": error_of(
            lambda: client.chat.completions.create(model=model, messages=[{"role": "user"}])
        ),
        "too_long": error_of(lambda: chat("y" * 3000, max_tokens=4)),
        "max_tokens": error_of(lambda: chat("x", max_tokens=100000)),
        "top_logprobs": error_of(lambda: chat("x", top_logprobs=2)),
        "bad_key": error_of(
            lambda: openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
            .models.list()
        ),
    }
    status, body = http(
        "/v1/chat/completions",
        data=b"{not json",
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    out["errors"]["bad_json"] = {"status": status, "error": json.loads(body).get("error")}
    out["health"] = json.loads(http("/health")[1])

    # 32 concurrent streaming clients, each with its own prompt; then each alone.
    many = prompts[1:]
    together = [None] * len(many)

    def run(i):
        together[i] = stream_text(many[i], temperature=0, max_tokens=16)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(many))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = [chat(p, temperature=0, max_tokens=16).choices[0].message.content for p in many]
    out["concurrent"] = together
    out["alone"] = alone
    out["metrics_tokens"] = metric("tiller_generated_tokens_total")
    out["metrics_text"] = http("/metrics")[1]

if mode == "busy":
    # The only slot is taken by a long stream; a second request is turned away.
    first = chat(prompts[0], stream=True, temperature=0, max_tokens=300)
    next(iter(first))
    out["busy"] = error_of(lambda: chat(prompts[0], temperature=0, max_tokens=4))
    first.close()

if mode == "disconnect":
    before = metric("tiller_generated_tokens_total") or 0
    s = chat(prompts[0], stream=True, temperature=0, max_tokens=400)
    it = iter(s)
    for _ in range(3):
        next(it)
    s.close()
    running = None
    for _ in range(200):
        running = metric("tiller_running_sequences")
        if running == 0 and metric("tiller_queue_depth") == 0:
            break
        time.sleep(0.05)
    out["running_after_disconnect"] = running
    time.sleep(0.3)
    out["tokens_after_disconnect"] = (metric("tiller_generated_tokens_total") or 0) - before

if mode == "one":
    r = chat(prompts[0], temperature=0, max_tokens=int(prompts[1]))
    out["text"] = r.choices[0].message.content
    out["finish"] = r.choices[0].finish_reason
    out["completion_tokens"] = r.usage.completion_tokens

if mode == "each":
    out["answers"] = {}
    for name in model.split(","):
        r = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": prompts[0]}],
            temperature=0, max_tokens=int(prompts[1]),
        )
        out["answers"][name] = r.choices[0].message.content
    out["models"] = [m.id for m in client.models.list().data]

print(json.dumps(out))
