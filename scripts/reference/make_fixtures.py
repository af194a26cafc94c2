"""Records reference numbers from Hugging Face transformers for Tiller's parity tests.

It loads SmolLM2-135M-Instruct straight from the same GGUF file `tiller model import`
reads (transformers dequantizes it with the `gguf` package), then writes
tests/fixtures/smollm2_reference.json with:
  - tokenizer ids of assorted texts (ASCII, accents, emoji, code, chat markup),
  - log-likelihoods of texts (every token but the first, natural log, f32 model),
  - greedy completions of chat prompts (token ids and text),
  - chat-template renderings (apply_chat_template, with and without generation prompt).

Not run by CI (it needs transformers, gguf and torch from PyPI). Run it with
    scripts/reference/run.sh
which creates .venv-ref (transformers + gguf, reusing .venv's torch) and calls this file.
"""
import json
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
gguf_path = pathlib.Path(sys.argv[1]).resolve()
out_path = ROOT / "tests" / "fixtures" / "smollm2_reference.json"

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! 12345 + 678 = 13023",
    "Café, naïve, jalapeño, Größe, façade — déjà vu.",
    "Emoji test: 🚀🔥 and 👩‍💻 writes code 😊",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "   leading spaces and\ttabs\n\n\nand newlines   ",
    "日本語のテキストと中文文本",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "List three primary colors."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain gravity in one sentence."}],
    [{"role": "user", "content": "Give me a Python function that reverses a string."}],
    [{"role": "user", "content": "How many legs does a spider have?"}],
]

MAX_NEW_TOKENS = 48


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    model.eval()

    tokenization = [{"text": t, "ids": tok.encode(t, add_special_tokens=False)} for t in TEXTS]

    loglik = []
    with torch.no_grad():
        for t in TEXTS:
            ids = torch.tensor([tok.encode(t, add_special_tokens=False)])
            logits = model(ids).logits.float()
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            chosen = logp.gather(1, ids[0, 1:].unsqueeze(1)).sum().item()
            loglik.append({"text": t, "logprob": chosen, "tokens": ids.shape[1] - 1})

    greedy = []
    templates = []
    with torch.no_grad():
        for messages in CHATS:
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            templates.append({
                "messages": messages,
                "with_generation_prompt": prompt,
                "without_generation_prompt": tok.apply_chat_template(messages, tokenize=False),
            })
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            out = model.generate(
                ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            )
            new = out[0, ids.shape[1]:].tolist()
            if new and new[-1] == tok.eos_token_id:
                text_ids = new[:-1]
            else:
                text_ids = new
            greedy.append({
                "messages": messages,
                "prompt_ids": ids[0].tolist(),
                "completion_ids": new,
                "completion": tok.decode(text_ids, skip_special_tokens=True),
            })

    import transformers
    fixture = {
        "source": "transformers " + transformers.__version__ + ", torch " + torch.__version__,
        "gguf": gguf_path.name,
        "max_new_tokens": MAX_NEW_TOKENS,
        "tokenization": tokenization,
        "loglik": loglik,
        "greedy": greedy,
        "chat_templates": templates,
    }
    out_path.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
