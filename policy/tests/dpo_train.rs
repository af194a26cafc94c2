//! DPO on a tiny random model: gradients against finite differences, a planted preference
//! learned, the reference cache (a second run makes no reference passes and gives the
//! same losses), LoRA with adapters-off reference, and exact resume.

mod preference_support;

use std::path::Path;

use preference_support::{assert_resume_matches, config_toml, words};

use tch::{Device, Kind, Tensor};
use tiller_data::{Collation, PairOptions, PreferenceRecord, TokenizedPair, Tokenizer, Turns};
use tiller_model::testing::{tiny_config, write_tiny_checkpoint};
use tiller_model::train::per_example_sum;
use tiller_model::CausalLm;
use tiller_policy::dpo::batch::{pair_logps, PairBatch};
use tiller_policy::dpo::{loss, train, DpoConfig, DpoParams, PairLogps};

/// Pairs whose chosen answer ends in `#` and whose rejected answer ends in `x`.
fn planted_rows(n: usize, seed: u64) -> Vec<serde_json::Value> {
    let mut word = words(seed);
    (0..n)
        .map(|_| {
            let prompt = word(6);
            let (a, b) = (word(6), word(6));
            serde_json::json!({"prompt": prompt, "chosen": format!("{a} #"), "rejected": format!("{b} x")})
        })
        .collect()
}

fn setup() -> tempfile::TempDir {
    preference_support::setup(&planted_rows(128, 1), &planted_rows(48, 2))
}

fn config(dir: &Path, out: &str, extra: &str) -> DpoConfig {
    let mut cfg: DpoConfig = toml::from_str(&config_toml(dir, out, extra)).unwrap();
    cfg.validate().unwrap();
    if extra.contains("[lora]") {
        cfg.reference.cache = false;
    }
    cfg
}

#[test]
fn a_tiny_model_learns_a_planted_preference() {
    let dir = setup();
    let cfg = config(dir.path(), "dpo", "");
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let before = summary.eval_before.unwrap();
    let after = summary.eval_after.unwrap();
    // Step 0: the policy is the reference, so the sigmoid loss is ln 2.
    assert!(
        (before.loss - std::f64::consts::LN_2).abs() < 1e-5,
        "eval loss before {}",
        before.loss
    );
    assert!(
        (summary.losses[0] - std::f64::consts::LN_2).abs() < 1e-5,
        "first loss {}",
        summary.losses[0]
    );
    assert!(
        after.accuracy >= 0.95,
        "held-out rewards/accuracies {} (was {})",
        after.accuracy,
        before.accuracy
    );
    assert!(after.loss < before.loss);
    CausalLm::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    for key in [
        "\"loss\"",
        "\"rewards/chosen\"",
        "\"rewards/rejected\"",
        "\"rewards/margins\"",
        "\"rewards/accuracies\"",
        "\"logps/chosen\"",
        "\"logps/rejected\"",
        "\"logits/chosen\"",
        "\"logits/rejected\"",
        "\"train_tokens_per_second\"",
        "\"eval_rewards/accuracies\"",
        "\"eval_loss\"",
    ] {
        assert!(metrics.contains(key), "metrics.jsonl lacks {key}");
    }

    // The second run finds every reference log-prob in the cache.
    let cfg2 = config(dir.path(), "dpo2", "");
    let again = train(&cfg2, false, &mut |_| {}).unwrap();
    assert!(summary.reference_forwards > 0);
    assert_eq!(
        again.reference_forwards, 0,
        "the second run ran the reference model"
    );
    assert_eq!(
        again.losses, summary.losses,
        "cached reference changed the losses"
    );
}

#[test]
fn lora_reference_is_the_base_with_adapters_off() {
    let dir = setup();
    let extra = "[lora]\nr = 4\nalpha = 8.0\nmerge = false";
    let mut cfg = config(dir.path(), "lora", extra);
    cfg.train.max_steps = Some(4);
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    assert!(
        (summary.losses[0] - std::f64::consts::LN_2).abs() < 1e-6,
        "first loss {}",
        summary.losses[0]
    );
    // No cache: one reference pass per micro-batch and per eval batch.
    assert!(summary.reference_forwards >= 4);
    assert!(cfg.out.join("adapter_model.safetensors").is_file());
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let dir = setup();
    let mut cfg = config(dir.path(), "full", "");
    cfg.train.max_steps = Some(8);
    cfg.train.save_every = Some(4);
    cfg.data.eval = None;
    assert_resume_matches(&cfg.out, |resume| {
        train(&cfg, resume, &mut |_| {}).unwrap().losses
    });
}

#[test]
fn a_bco_pair_resume_without_its_running_mean_is_an_error() {
    let dir = setup();
    let mut cfg = config(dir.path(), "bco", "");
    cfg.loss.kind = tiller_policy::dpo::DpoLoss::BcoPair;
    cfg.train.max_steps = Some(4);
    cfg.train.save_every = Some(2);
    cfg.data.eval = None;
    train(&cfg, false, &mut |_| {}).unwrap();
    // The newest checkpoint resumes fine with its state file ...
    let state = cfg.out.join("checkpoint-4").join("dpo_state.json");
    assert!(state.is_file());
    std::fs::remove_dir_all(cfg.out.join("checkpoint-2")).unwrap();
    cfg.train.max_steps = Some(4);
    // ... and without it the resume stops, naming the file, instead of starting the
    // running mean over from zero.
    std::fs::remove_file(&state).unwrap();
    let err = match train(&cfg, true, &mut |_| {}) {
        Ok(_) => panic!("resumed without dpo_state.json"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("dpo_state.json"), "{err}");
}

/// ∂loss/∂θ from backprop against central finite differences (f64 throughout), on
/// the sigmoid loss of a tiny model against a different tiny reference.
#[test]
fn sigmoid_gradient_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 5).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    let policy = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Double, 11);
    let reference = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Double, 12);
    let pairs: Vec<TokenizedPair> = planted_rows(3, 9)
        .into_iter()
        .map(|r| {
            let text = |k: &str| Turns::Text(r[k].as_str().unwrap().to_owned());
            let record = PreferenceRecord {
                prompt: text("prompt"),
                chosen: text("chosen"),
                rejected: text("rejected"),
            };
            tiller_data::tokenize_preference(&tokenizer, &record, &PairOptions::new(64)).unwrap()
        })
        .collect();
    let refs: Vec<&TokenizedPair> = pairs.iter().collect();
    let b = PairBatch::new(&refs, Collation::Padding, 64, 258, Device::Cpu).unwrap();
    let params = DpoParams {
        beta: 2.0,
        ..DpoParams::default()
    };
    // The model's LM head returns f32 logits, too coarse for finite differences, so the
    // check runs the same gather-then-head path in f64; `pair_logps` must agree with it.
    let tb = &b.seqs.batch;
    let logps64 = |lm: &CausalLm| -> (Tensor, Tensor) {
        let hidden = lm
            .model
            .forward(&tb.input_ids, &tb.positions, tb.mask.as_ref(), None);
        let c = hidden.size()[2];
        let picked = hidden
            .reshape([-1, c])
            .index_select(0, &tb.targets.positions);
        let logits = picked.linear::<Tensor>(&lm.model.embed_tokens, None); // tied head, (n, V) f64
        let lp = logits
            .log_softmax(-1, Kind::Double)
            .gather(1, &tb.targets.labels.unsqueeze(1), false)
            .squeeze_dim(1);
        let per_seq = per_example_sum(&lp, &tb.targets, tb.num_examples); // padding: one segment per sequence
        (per_seq.narrow(0, 0, 3), per_seq.narrow(0, 3, 3))
    };
    let (ref_c, ref_r) = tch::no_grad(|| logps64(&reference));
    let s32 = tch::no_grad(|| pair_logps(&reference.model, &b)).unwrap();
    assert!(s32
        .chosen
        .to_kind(Kind::Double)
        .allclose(&ref_c, 1e-5, 1e-4, false));
    assert!(s32
        .rejected
        .to_kind(Kind::Double)
        .allclose(&ref_r, 1e-5, 1e-4, false));
    let eval = || -> Tensor {
        let (c, r) = logps64(&policy);
        let (nc, nr) = b.token_counts(Kind::Double, Device::Cpu);
        let inputs = PairLogps {
            chosen: c,
            rejected: r,
            ref_chosen: Some(ref_c.shallow_clone()),
            ref_rejected: Some(ref_r.shallow_clone()),
            chosen_tokens: nc,
            rejected_tokens: nr,
        };
        loss(&inputs, &params, None).unwrap().loss
    };
    eval().backward();
    let vars = policy.vs.variables();
    let mut checked = 0;
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
    ] {
        let w = &vars[name];
        let grad = w.grad().flatten(0, -1);
        // The entries with the largest gradients, where the comparison is meaningful.
        let top = grad.abs().topk(3, 0, true, true).1;
        for k in Vec::<i64>::try_from(&top).unwrap() {
            let analytic = grad.double_value(&[k]);
            // RMSNorm and RoPE compute in f32 inside the model, so h must be large enough that
            // f32 rounding is negligible; the loss is smooth enough for O(h²) to be too.
            let h = 3e-2;
            let flat = w.flatten(0, -1);
            let at = |delta: f64| {
                tch::no_grad(|| {
                    let _ = flat.get(k).f_add_scalar_(delta).unwrap();
                });
                let v = tch::no_grad(eval).double_value(&[]);
                tch::no_grad(|| {
                    let _ = flat.get(k).f_sub_scalar_(delta).unwrap();
                });
                v
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let tol = 5e-4 * analytic.abs() + 1e-7;
            eprintln!("{name}[{k}]: backprop {analytic:.6e}, finite difference {numeric:.6e}");
            assert!(
                (numeric - analytic).abs() < tol,
                "{name}[{k}]: backprop {analytic}, finite difference {numeric}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn the_cache_key_changes_with_weights_tokens_and_dtype() {
    use tiller_policy::dpo::cache::cache_key;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_tiny_checkpoint(&a, 1).unwrap();
    write_tiny_checkpoint(&b, 2).unwrap();
    let pair = TokenizedPair {
        prompt_ids: vec![1, 2],
        chosen_ids: vec![3],
        rejected_ids: vec![4],
        truncated: false,
    };
    let mut longer = pair.clone();
    longer.chosen_ids.push(5);
    let key = |dir: &Path, p: &TokenizedPair, dtype: &str| {
        cache_key(&[dir], dir, dtype, std::slice::from_ref(p)).unwrap()
    };
    let base = key(&a, &pair, "f32");
    assert_eq!(base, key(&a, &pair, "f32"));
    assert_ne!(base, key(&b, &pair, "f32"), "reference weights");
    assert_ne!(
        base,
        key(&a, &longer, "f32"),
        "tokens (data, template, max lengths)"
    );
    assert_ne!(base, key(&a, &pair, "bf16"), "dtype");
}
