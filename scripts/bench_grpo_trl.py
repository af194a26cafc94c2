"""TRL side of scripts/bench_grpo.sh: GRPOTrainer on the same model, prompts, rule reward,
group size, completion length and batch as tiller's run, on CPU, at TRL's defaults (f32
weights, bf16 autocast) or with a last argument `f32` in f32 throughout (bf16 = False).
Times every call to `model.generate` (rollout tokens/s) and every optimizer step. Prints
one JSON line.

usage: bench_grpo_trl.py MODEL_DIR PROMPTS_JSONL STEPS PROMPTS_PER_STEP G MAX_NEW_TOKENS
                         TARGET_WORDS TOLERANCE OUT_DIR [f32]
"""
import json
import sys
import time

import torch


def length_reward(target, tolerance):
    """tiller's `length` rule: 1 within `tolerance` words of `target`, falling linearly to 0."""

    def reward(completions, **kwargs):
        out = []
        for c in completions:
            text = c[-1]["content"] if isinstance(c, list) else c
            off = max(0, abs(len(text.split()) - target) - tolerance)
            out.append(max(0.0, 1.0 - off / target))
        return out

    reward.__name__ = "length"
    return reward


def main():
    model_dir, prompts, steps, per_step, g, max_new, target, tol, out = sys.argv[1:10]
    steps, per_step, g, max_new, target, tol = map(int, (steps, per_step, g, max_new, target, tol))
    f32 = sys.argv[10:11] == ["f32"]
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    dataset = load_dataset("json", data_files=prompts, split="train")
    eos = {tokenizer.eos_token_id, *([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int) else (model.generation_config.eos_token_id or []))}

    gen = {"seconds": [], "tokens": []}
    original = model.generate

    def timed_generate(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        seconds = time.perf_counter() - start
        prompt_len = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).shape[1]
        sequences = result.sequences if hasattr(result, "sequences") else result
        tokens = 0
        for row in sequences[:, prompt_len:].tolist():
            n = len(row)
            for i, t in enumerate(row):
                if t in eos:
                    n = i + 1
                    break
            tokens += n
        gen["seconds"].append(seconds)
        gen["tokens"].append(tokens)
        return result

    model.generate = timed_generate

    class Clock(TrainerCallback):
        ends = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    config = GRPOConfig(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=per_step * g,
        gradient_accumulation_steps=1,
        num_generations=g,
        max_completion_length=max_new,
        temperature=1.0,
        learning_rate=1e-6,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        **({"bf16": False} if f32 else {}),
        seed=42,
    )
    clock = Clock()
    start = time.perf_counter()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=length_reward(target, tol),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    ends = [start] + clock.ends
    step_seconds = [b - a for a, b in zip(ends, ends[1:])]
    # Step 1 is warm-up when there is more than one step.
    skip = 1 if len(step_seconds) > 1 else 0
    gen_s, gen_t = sum(gen["seconds"][skip:]), sum(gen["tokens"][skip:])
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    print(json.dumps({
        "trl_rollout_tokens_per_second": gen_t / max(gen_s, 1e-9),
        "trl_step_seconds": sum(step_seconds[skip:]) / max(len(step_seconds) - skip, 1),
        "trl_generation_seconds_per_step": gen_s / max(len(gen["seconds"]) - skip, 1),
        "trl_generate_calls": len(gen["seconds"]),
        "trl_rewards": rewards,
        "trl_mean_length": sum(lengths[skip:]) / max(len(lengths) - skip, 1),
        "torch_threads": torch.get_num_threads(),
        "trl_bf16": config.bf16,
    }))


if __name__ == "__main__":
    main()
