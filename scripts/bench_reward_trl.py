"""TRL side of scripts/bench_reward.sh: RewardTrainer at its defaults (batch size,
max_length, gradient checkpointing, precision) on the same model and pairs. Prints one
JSON line: tokens/s after the warm-up step and the peak RSS.

usage: bench_reward_trl.py MODEL_DIR PAIRS_JSONL STEPS BATCH_SIZE MAX_LENGTH OUT_DIR [f32]
(`f32` turns off TRL's default bf16 autocast, for a same-precision comparison.)
"""
import json
import resource
import sys
import time

import torch


def main():
    model_dir, pairs, steps, batch, max_length, out = sys.argv[1:7]
    f32 = sys.argv[7:8] == ["f32"]
    steps, batch, max_length = int(steps), int(batch), int(max_length)
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, torch_dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    dataset = load_dataset("json", data_files=pairs, split="train")

    class Clock(TrainerCallback):
        ends = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    # Only what the comparison fixes is set; everything else stays at TRL's defaults.
    config = RewardConfig(
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
    trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    tokens = {h["step"]: h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h}
    # Step 1 is warm-up: measure from its end to the last step's end.
    tok = tokens[steps] - tokens[1]
    sec = clock.ends[steps] - clock.ends[1]
    print(json.dumps({
        "trl_tokens_per_second": tok / sec,
        "trl_tokens": tok,
        "trl_seconds": sec,
        "trl_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trl_gradient_checkpointing": config.gradient_checkpointing,
        "trl_bf16": config.bf16,
        "trl_batch_size": config.per_device_train_batch_size,
        "trl_max_length": config.max_length,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
