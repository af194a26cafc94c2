"""TRL side of scripts/bench_sft.sh: SFTTrainer at its defaults (batch size, max_length,
padding, gradient checkpointing, precision) on the same model and data, plus the
machine's f32 matmul roofline. Prints one JSON line.

usage: bench_sft_trl.py MODEL_DIR TRAIN_JSONL STEPS BATCH_SIZE MAX_LENGTH OUT_DIR [f32]
(`f32` turns off TRL's default bf16 autocast, for a same-precision comparison.)
"""
import json
import sys
import time

import torch


def matmul_gflops(n=2048, reps=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def main():
    model_dir, train, steps, batch, max_length, out = sys.argv[1:7]
    f32 = sys.argv[7:8] == ["f32"]
    steps, batch, max_length = int(steps), int(batch), int(max_length)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    roofline = matmul_gflops()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())
    dataset = load_dataset("json", data_files=train, split="train")

    class Clock(TrainerCallback):
        ends = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append((state.global_step, time.perf_counter()))

    # Only what the comparison fixes is set; everything else stays at TRL's defaults.
    config = SFTConfig(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=batch,
        max_length=max_length,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
        **({"bf16": False} if f32 else {}),
    )
    clock = Clock()
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    tokens = {h["step"]: h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h}
    times = dict(clock.ends)
    # Step 1 is warm-up: measure from its end to the last step's end.
    first, last = 1, steps
    tok = tokens[last] - tokens[first]
    sec = times[last] - times[first]
    tps = tok / sec
    print(json.dumps({
        "trl_tokens_per_second": tps,
        "trl_tokens": tok,
        "trl_seconds": sec,
        "params": params,
        "matmul_gflops": roofline,
        "trl_roofline_share": 6 * params * tps / (roofline * 1e9),
        "trl_gradient_checkpointing": config.gradient_checkpointing,
        "trl_bf16": config.bf16,
        "trl_padding_free": config.padding_free,
        "trl_packing": config.packing,
        "trl_assistant_only_loss": config.assistant_only_loss,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
