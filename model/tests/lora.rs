//! LoRA on a tiny random model: only adapters train, merging equals base + adapter,
//! PEFT's names and config, adapter save/load, and switching adapters off.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use tiller_model::checkpoint::with_torch_seed;
use tiller_model::lora::{PeftConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::train::{token_nll, trainable_params, AdamW, OptimConfig, TrainBatch};
use tiller_model::{CausalLm, Lora, LoraConfig};

fn all_targets(r: usize) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 2.0 * r as f64,
        dropout: 0.0,
        target_modules: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// The same ids on every call: seeded under the lock other tests' random draws take too.
fn ids(t: i64) -> (Tensor, Tensor) {
    let ids = with_torch_seed(11, || {
        Tensor::randint(250, [2, t], (Kind::Int64, Device::Cpu))
    });
    (
        ids,
        Tensor::arange(t, (Kind::Int64, Device::Cpu)).expand([2, t], false),
    )
}

fn logits(lm: &CausalLm) -> Tensor {
    let (ids, pos) = ids(12);
    tch::no_grad(|| lm.model.logits(&lm.model.forward(&ids, &pos, None, None)))
}

fn snapshot(lm: &CausalLm) -> HashMap<String, Tensor> {
    lm.vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

/// A few AdamW steps on the adapters.
fn train(lm: &CausalLm, lora: &Lora, steps: usize) {
    let (ids, pos) = ids(12);
    let mut opt = AdamW::new(
        trainable_params(&lora.vs),
        &OptimConfig {
            lr: 1e-2,
            ..OptimConfig::default()
        },
    );
    let batch = tiller_data::collate(
        &[&tiller_data::TokenizedExample {
            input_ids: Vec::<i64>::try_from(ids.get(0)).expect("ids"),
            loss_mask: vec![true; 12],
            truncated: false,
        }],
        tiller_data::Collation::Padding,
        0,
        0,
    )
    .expect("collate");
    let batch = TrainBatch::from_packed(&batch, Device::Cpu).expect("batch");
    let _ = pos;
    for _ in 0..steps {
        opt.zero_grad();
        let hidden = lm.model.forward(
            &batch.input_ids,
            &batch.positions,
            batch.mask.as_ref(),
            None,
        );
        let loss = token_nll(&lm.model, &hidden, &batch.targets).expect("loss");
        (loss.nll_sum / loss.count as f64).backward();
        opt.step(1e-2).unwrap();
    }
}

#[test]
fn training_changes_only_adapter_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lm = write_tiny_checkpoint(dir.path(), 1).expect("tiny");
    let before = snapshot(&lm);
    let lora = Lora::attach(&mut lm, &all_targets(4), 0).expect("attach");
    assert!(
        trainable_params(&lm.vs).is_empty(),
        "the base must be frozen"
    );
    let adapters_before: HashMap<String, Tensor> = lora
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();
    // 2 layers × 7 projections × (A, B).
    assert_eq!(adapters_before.len(), 28);
    train(&lm, &lora, 5);
    for (name, value) in lm.vs.variables() {
        assert!(value.equal(&before[&name]), "base weight {name} changed");
    }
    for (name, value) in lora.vs.variables() {
        assert!(
            !value.equal(&adapters_before[&name]),
            "adapter weight {name} did not train"
        );
        let r = if name.contains("lora_A") {
            value.size()[0]
        } else {
            value.size()[1]
        };
        assert_eq!(r, 4, "{name} has rank {r}");
    }
}

#[test]
fn fresh_adapters_leave_the_model_unchanged_and_can_be_switched_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lm = write_tiny_checkpoint(dir.path(), 2).expect("tiny");
    let base = logits(&lm);
    let lora = Lora::attach(&mut lm, &all_targets(2), 0).expect("attach");
    // B starts at zero, so the adapter adds exactly 0.
    for (name, value) in lora.vs.variables() {
        if name.contains("lora_B") {
            assert_eq!(value.abs().max().double_value(&[]), 0.0, "{name}");
        }
    }
    // The tolerance only absorbs rounding that differs between two identical forwards
    // (MKL's blocking can depend on buffer alignment).
    assert!(
        logits(&lm).allclose(&base, 1e-4, 1e-4, false),
        "B starts at zero"
    );
    train(&lm, &lora, 3);
    assert!(!logits(&lm).allclose(&base, 1e-4, 1e-4, false));
    {
        let _off = lora.disabled();
        assert!(
            logits(&lm).equal(&base),
            "disabled adapters must give the base model exactly"
        );
    }
    assert!(!logits(&lm).allclose(&base, 1e-4, 1e-4, false));
    // The guard turns the adapters back on when a reference pass fails, too.
    let failed = || -> Result<(), String> {
        let _off = lora.disabled();
        Err("the reference pass failed".to_owned())
    };
    assert_eq!(failed(), Err("the reference pass failed".to_owned()));
    assert!(!logits(&lm).allclose(&base, 1e-4, 1e-4, false));
}

#[test]
fn merged_export_equals_base_plus_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base_dir, adapter_dir, merged_dir) = (
        dir.path().join("base"),
        dir.path().join("adapter"),
        dir.path().join("merged"),
    );
    let mut lm = write_tiny_checkpoint(&base_dir, 3).expect("tiny");
    let lora = Lora::attach(&mut lm, &all_targets(4), 0).expect("attach");
    train(&lm, &lora, 4);
    let with_adapter = logits(&lm);
    lora.save(&adapter_dir, &base_dir.to_string_lossy())
        .expect("save adapter");

    // Loading the adapter onto a fresh base reproduces the outputs exactly.
    let mut fresh = CausalLm::load(&base_dir, Device::Cpu, Kind::Float).expect("base");
    let loaded = Lora::load(&mut fresh, &adapter_dir).expect("load adapter");
    assert!(logits(&fresh).equal(&with_adapter));

    // Merged into W and exported as an HF directory, then loaded as a plain model.
    loaded.merge(&mut fresh).expect("merge");
    fresh
        .save(&merged_dir, Some(&base_dir))
        .expect("save merged");
    let merged = CausalLm::load(&merged_dir, Device::Cpu, Kind::Float).expect("merged");
    let diff = (logits(&merged) - &with_adapter)
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-5, "merged differs by {diff}");

    // An adapter directory loads as base + merged adapter through CausalLm::load.
    let via_dir = CausalLm::load(&adapter_dir, Device::Cpu, Kind::Float).expect("adapter dir");
    assert!(
        (logits(&via_dir) - &with_adapter)
            .abs()
            .max()
            .double_value(&[])
            < 1e-5
    );
}

#[test]
fn adapters_use_peft_names_and_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lm = write_tiny_checkpoint(&dir.path().join("base"), 4).expect("tiny");
    let config = LoraConfig {
        r: 3,
        alpha: 6.0,
        dropout: 0.1,
        target_modules: vec!["q_proj".into(), "down_proj".into()],
    };
    let lora = Lora::attach(&mut lm, &config, 0).expect("attach");
    let out = dir.path().join("adapter");
    lora.save(&out, "base").expect("save");
    let tensors =
        tiller_model::checkpoint::load_safetensors(&out.join(ADAPTER_WEIGHTS)).expect("read");
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let expected = [
        "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight",
        "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
    ];
    assert_eq!(names, expected);
    // A is (r, in), B is (out, r), as in torch.nn.Linear.
    assert_eq!(
        tensors["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"].size(),
        [3, 128]
    );
    assert_eq!(
        tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].size(),
        [64, 3]
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(ADAPTER_CONFIG)).expect("config"))
            .expect("json");
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["r"], 3);
    assert_eq!(json["lora_alpha"], 6.0);
    assert_eq!(
        json["target_modules"],
        serde_json::json!(["q_proj", "down_proj"])
    );
    assert_eq!(PeftConfig::read(&out).expect("read").lora_config(), config);
}

#[test]
fn unknown_target_modules_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lm = write_tiny_checkpoint(dir.path(), 5).expect("tiny");
    let config = LoraConfig {
        target_modules: vec!["qkv".into()],
        ..LoraConfig::default()
    };
    let err = Lora::attach(&mut lm, &config, 0).err().expect("must fail");
    assert!(err.to_string().contains("unknown module `qkv`"), "{err}");
}
