"""TRL side of scripts/bench_dpo.sh: DPOTrainer on the same model, pairs, batch size,
max length and β as tiller, in f32 on CPU; everything else at TRL's defaults (reference
model kept in memory and run every step: precompute_ref_log_probs = False). Two epochs
over the pairs; prints one JSON line with tokens/s per epoch and the peak RSS.

usage: bench_dpo_trl.py MODEL_DIR PAIRS_JSONL BATCH MAX_LENGTH BETA OUT_DIR
"""
import json
import resource
import sys
import time

import torch


def main():
    model_dir, pairs, batch, max_length, beta, out = sys.argv[1:7]
    batch, max_length, beta = int(batch), int(max_length), float(beta)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    dataset = load_dataset("json", data_files=pairs, split="train")

    class Clock(TrainerCallback):
        start = None
        ends = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    # Only what the comparison fixes is set; everything else stays at TRL's defaults.
    config = DPOConfig(
        output_dir=out,
        num_train_epochs=2,
        per_device_train_batch_size=batch,
        max_length=max_length,
        beta=beta,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
    )
    clock = Clock()
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    tokens = {h["step"]: h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h}
    steps = max(clock.ends)
    per_epoch = steps // 2
    e1_tok, e1_sec = tokens[per_epoch], clock.ends[per_epoch] - clock.start
    e2_tok = tokens[steps] - tokens[per_epoch]
    e2_sec = clock.ends[steps] - clock.ends[per_epoch]
    print(json.dumps({
        "steps_per_epoch": per_epoch,
        "epoch1_tokens": e1_tok,
        "epoch1_seconds": e1_sec,
        "epoch1_tokens_per_second": e1_tok / e1_sec,
        "epoch2_tokens": e2_tok,
        "epoch2_seconds": e2_sec,
        "epoch2_tokens_per_second": e2_tok / e2_sec,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gradient_checkpointing": config.gradient_checkpointing,
        "bf16": config.bf16,
        "padding_free": config.padding_free,
        "precompute_ref_log_probs": config.precompute_ref_log_probs,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
