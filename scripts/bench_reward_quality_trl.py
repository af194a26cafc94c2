"""TRL side of scripts/bench_reward_quality.sh: RewardTrainer with the settings the script
fixes (learning rate, linear schedule without warm-up, batch, epochs, max length, seed, f32,
no weight decay, gradient clipping at 1.0 as both default), trained and saved as a
transformers model, then TRL's own evaluation of it. Prints one JSON line.

usage: bench_reward_quality_trl.py MODEL_DIR TRAIN EVAL OUT_DIR LR EPOCHS BATCH MAX_LENGTH SEED
"""
import json
import sys
import time

import torch


def main():
    model_dir, train, eval_, out, lr, epochs, batch, max_length, seed = sys.argv[1:10]
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, torch_dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    data = load_dataset("json", data_files={"train": train, "eval": eval_})

    config = RewardConfig(
        output_dir=out,
        learning_rate=float(lr),
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        num_train_epochs=float(epochs),
        per_device_train_batch_size=int(batch),
        per_device_eval_batch_size=int(batch),
        max_length=int(max_length),
        seed=int(seed),
        bf16=False,
        # Recomputation changes nothing in the result, only the time; off like tiller.
        gradient_checkpointing=False,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=data["train"], eval_dataset=data["eval"],
                            processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(f"{out}/model")
    tokenizer.save_pretrained(f"{out}/model")
    metrics = trainer.evaluate()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({
        "trl_train_seconds": seconds,
        "trl_steps": trainer.state.global_step,
        "trl_first_loss": losses[0] if losses else None,
        "trl_last_loss": losses[-1] if losses else None,
        "trl_eval_accuracy": metrics.get("eval_accuracy"),
        "trl_eval_margin": metrics.get("eval_margin"),
        "trl_train_rows": len(data["train"]),
        "trl_eval_rows": len(data["eval"]),
    }))


if __name__ == "__main__":
    main()
