//! Training primitives on hand-computed values and a tiny random model: AdamW, schedules,
//! clipping, overfitting one batch, the NaN guard, packed-vs-unpacked logits, atomic
//! checkpoint directories.

use tch::{Device, Kind, Tensor};
use tiller_data::{collate, pack_batch, Collation, TokenizedExample};
use tiller_model::checkpoint::with_torch_seed;
use tiller_model::testing::tiny_config;
use tiller_model::train::{
    check_finite, list_checkpoints, token_nll, trainable_params, AdamW, OnNonFinite, OptimConfig,
    Schedule, ScheduleConfig, TrainBatch, TrainState, TRAIN_STATE_VERSION,
};
use tiller_model::{CausalLm, ModelError};

fn config(lr: f64, weight_decay: f64) -> OptimConfig {
    OptimConfig {
        lr,
        weight_decay,
        ..OptimConfig::default()
    }
}

/// Sets `p.grad` to `g` through a backward pass of `(p * g).sum()`.
fn set_grad(params: &[(String, Tensor)], grads: &[&[f32]]) {
    let loss = params
        .iter()
        .zip(grads)
        .map(|((_, p), g)| (p * Tensor::from_slice(g).view(p.size().as_slice())).sum(Kind::Float))
        .reduce(|a, b| a + b)
        .expect("at least one parameter");
    loss.backward();
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32 tensor")
}

/// The same tensors again (shallow), for handing to an optimizer.
fn share(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

fn params() -> Vec<(String, Tensor)> {
    vec![
        (
            "layer.weight".to_owned(),
            Tensor::from_slice(&[1.0f32, 2.0])
                .view([1, 2])
                .set_requires_grad(true),
        ),
        (
            "layer.norm.weight".to_owned(),
            Tensor::from_slice(&[1.0f32]).set_requires_grad(true),
        ),
    ]
}

#[test]
fn adamw_matches_hand_computed_steps() {
    // With a constant gradient, m̂ = g and v̂ = g² at every step, so Adam moves each
    // weight by lr·g/(|g| + eps) ≈ lr·sign(g), after decaying matrices by (1 − lr·wd).
    let params = params();
    let mut opt = AdamW::new(share(&params), &config(0.1, 0.1));
    let expected = [([0.89f32, 2.08], 0.9f32), ([0.7811, 2.1592], 0.8)];
    for (matrix, norm) in expected {
        opt.zero_grad();
        set_grad(&params, &[&[0.5, -1.0], &[2.0]]);
        opt.step(0.1).unwrap();
        for (got, want) in values(&params[0].1).iter().zip(matrix) {
            assert!((got - want).abs() < 1e-6, "matrix: {got} vs {want}");
        }
        // The norm is 1-D: no weight decay.
        assert!((values(&params[1].1)[0] - norm).abs() < 1e-6);
    }
    assert_eq!(opt.steps(), 2);
}

#[test]
fn adamw_state_round_trips_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (params(), params());
    let mut opt_a = AdamW::new(share(&a), &config(0.01, 0.1));
    let mut opt_b = AdamW::new(share(&b), &config(0.01, 0.1));
    opt_a.zero_grad();
    set_grad(&a, &[&[0.3, -0.7], &[0.2]]);
    opt_a.step(0.01).unwrap();
    opt_a
        .save(&dir.path().join("optimizer.safetensors"))
        .expect("save");
    tch::no_grad(|| {
        for ((_, pa), (_, pb)) in a.iter().zip(&b) {
            pb.shallow_clone().copy_(pa);
        }
    });
    opt_b
        .load(&dir.path().join("optimizer.safetensors"), opt_a.steps())
        .expect("load");
    for (params, opt) in [(&a, &mut opt_a), (&b, &mut opt_b)] {
        opt.zero_grad();
        set_grad(params, &[&[-0.1, 0.4], &[0.9]]);
        opt.step(0.01).unwrap();
    }
    for ((_, pa), (_, pb)) in a.iter().zip(&b) {
        assert!(pa.equal(pb), "resumed optimizer diverged");
    }
}

#[test]
fn bf16_parameters_train_through_f32_master_weights() {
    // 1.0 in bf16 has an ulp of 2^-7 ≈ 0.0078: an update of 1e-3 applied to the bf16
    // weight itself would round away every step. Through the f32 master, 20 such steps
    // move the weight by ≈ 0.02, which bf16 can show.
    let dir = tempfile::tempdir().expect("tempdir");
    let make = || {
        vec![(
            "layer.norm.weight".to_owned(),
            Tensor::from_slice(&[1.0f32])
                .to_kind(Kind::BFloat16)
                .set_requires_grad(true),
        )]
    };
    let (p, q) = (make(), make());
    let mut opt = AdamW::new(share(&p), &config(1e-3, 0.0));
    let mut resumed = AdamW::new(share(&q), &config(1e-3, 0.0));
    let grad = |params: &[(String, Tensor)]| {
        (&params[0].1 * Tensor::from_slice(&[1.0f32]).to_kind(Kind::BFloat16))
            .sum(Kind::Float)
            .backward()
    };
    for _ in 0..10 {
        opt.zero_grad();
        grad(&p);
        opt.step(1e-3).unwrap();
    }
    // Resume from a checkpoint after 10 steps: the master weights come back exactly.
    opt.save(&dir.path().join("optimizer.safetensors"))
        .expect("save");
    tch::no_grad(|| q[0].1.shallow_clone().copy_(&p[0].1));
    resumed
        .load(&dir.path().join("optimizer.safetensors"), opt.steps())
        .expect("load");
    for _ in 0..10 {
        for (params, o) in [(&p, &mut opt), (&q, &mut resumed)] {
            o.zero_grad();
            grad(params);
            o.step(1e-3).unwrap();
        }
    }
    let w = p[0].1.to_kind(Kind::Float).double_value(&[0]);
    assert_eq!(p[0].1.kind(), Kind::BFloat16, "the model keeps its dtype");
    assert!((w - 0.98).abs() < 0.004, "weight {w}, expected ≈ 0.98");
    assert!(p[0].1.equal(&q[0].1), "a resumed run diverged");
}

#[test]
fn optimizer_load_refuses_missing_moments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("optimizer.safetensors");
    AdamW::new(share(&params()[..1]), &OptimConfig::default())
        .save(&path)
        .expect("save");
    let err = AdamW::new(params(), &OptimConfig::default())
        .load(&path, 1)
        .expect_err("must fail");
    assert!(matches!(err, ModelError::MissingTensors { .. }), "{err}");
}

#[test]
fn clipping_scales_to_the_global_norm_and_reports_it() {
    let params = params();
    let mut opt = AdamW::new(share(&params), &OptimConfig::default());
    set_grad(&params, &[&[3.0, 0.0], &[4.0]]);
    let norm = opt.clip_grad_norm(1.0).expect("norm");
    assert!((norm - 5.0).abs() < 1e-6);
    assert!((opt.grad_norm().expect("norm") - 1.0).abs() < 1e-5);
    let g = values(&params[0].1.grad());
    assert!((g[0] - 0.6).abs() < 1e-5 && g[1] == 0.0);
    // Below the limit nothing changes.
    assert!((opt.clip_grad_norm(10.0).expect("norm") - 1.0).abs() < 1e-5);
    assert!((opt.grad_norm().expect("norm") - 1.0).abs() < 1e-5);
}

#[test]
fn schedules_follow_transformers() {
    let at = |kind, step| {
        ScheduleConfig {
            kind,
            warmup_steps: 2,
        }
        .factor(step, 10)
    };
    for kind in [Schedule::Constant, Schedule::Linear, Schedule::Cosine] {
        assert_eq!(at(kind, 0), 0.0);
        assert_eq!(at(kind, 1), 0.5);
        assert_eq!(at(kind, 2), 1.0);
    }
    assert_eq!(at(Schedule::Constant, 9), 1.0);
    assert!((at(Schedule::Linear, 6) - 0.5).abs() < 1e-12);
    assert!((at(Schedule::Linear, 9) - 0.125).abs() < 1e-12);
    assert!((at(Schedule::Cosine, 6) - 0.5).abs() < 1e-12);
    assert!(at(Schedule::Cosine, 10).abs() < 1e-12);
    assert!((ScheduleConfig::default().lr(3e-4, 0, 4) - 3e-4).abs() < 1e-18);
}

fn example(ids: &[i64], prompt: usize) -> TokenizedExample {
    TokenizedExample {
        input_ids: ids.to_vec(),
        loss_mask: (0..ids.len()).map(|i| i >= prompt).collect(),
        truncated: false,
    }
}

fn random_example(len: usize, seed: i64) -> TokenizedExample {
    let ids = with_torch_seed(seed, || {
        Tensor::randint(250, [len as i64], (Kind::Int64, Device::Cpu))
    });
    let ids = Vec::<i64>::try_from(ids).expect("ids");
    example(&ids, len / 3)
}

#[test]
fn one_batch_overfits() {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 3);
    let examples = [random_example(24, 1), random_example(17, 2)];
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let batch = TrainBatch::from_packed(
        &collate(&refs, Collation::Padding, 64, 0).expect("collate"),
        Device::Cpu,
    )
    .expect("batch");
    let mut opt = AdamW::new(trainable_params(&lm.vs), &config(1e-2, 0.0));
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad();
        let hidden = lm.model.forward(
            &batch.input_ids,
            &batch.positions,
            batch.mask.as_ref(),
            None,
        );
        let loss = token_nll(&lm.model, &hidden, &batch.targets).expect("loss");
        let mean = loss.nll_sum / loss.count as f64;
        mean.backward();
        losses.push(mean.double_value(&[]));
        opt.clip_grad_norm(1.0).expect("clip");
        opt.step(1e-2).unwrap();
    }
    assert!(losses[0] > 4.0, "start {}", losses[0]);
    assert!(
        losses[59] < 0.05,
        "loss after 60 steps: {:?}",
        &losses[50..]
    );
}

#[test]
fn packed_rows_give_the_same_logits_as_separate_examples() {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 4);
    let examples = [
        random_example(9, 5),
        random_example(14, 6),
        random_example(5, 7),
    ];
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    for (packed, name) in [
        (pack_batch(&refs, 16, 0).expect("pack"), "pack"),
        (
            collate(&refs, Collation::PaddingFree, 0, 0).expect("padding-free"),
            "padding-free",
        ),
        (
            collate(&refs, Collation::Padding, 0, 0).expect("padding"),
            "padding",
        ),
    ] {
        let b = TrainBatch::from_packed(&packed, Device::Cpu).expect("batch");
        assert!(
            b.mask.is_some(),
            "{name}: several examples or padding need a mask"
        );
        let logits =
            lm.model.logits(
                &lm.model
                    .forward(&b.input_ids, &b.positions, b.mask.as_ref(), None),
            );
        for seg in &packed.segments {
            let e = &examples[seg.example];
            let t = e.len() as i64;
            let alone = lm.model.logits(&lm.model.forward(
                &Tensor::from_slice(&e.input_ids).view([1, t]),
                &Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]),
                None,
                None,
            ));
            let inside = logits
                .get(seg.row as i64)
                .narrow(0, seg.start as i64, t)
                .unsqueeze(0);
            let diff = (inside - alone).abs().max().double_value(&[]);
            assert!(
                diff < 1e-5,
                "{name}: example {} differs by {diff}",
                seg.example
            );
        }
    }
}

#[test]
fn targets_cover_only_loss_tokens() {
    let examples = [example(&[1, 2, 3, 4], 2), example(&[5, 6, 7], 1)];
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let b = TrainBatch::from_packed(
        &collate(&refs, Collation::PaddingFree, 0, 0).expect("collate"),
        Device::Cpu,
    )
    .expect("batch");
    // Row: [1 2 3 4 5 6 7]; targets 3, 4 (predicted from positions 1, 2) and 6, 7 (4, 5).
    assert_eq!(
        Vec::<i64>::try_from(&b.targets.labels).expect("labels"),
        [3, 4, 6, 7]
    );
    assert_eq!(
        Vec::<i64>::try_from(&b.targets.positions).expect("positions"),
        [1, 2, 4, 5]
    );
    assert_eq!(
        Vec::<i64>::try_from(&b.targets.example).expect("example"),
        [0, 0, 1, 1]
    );
    assert_eq!(b.num_tokens, 7);
}

#[test]
fn non_finite_values_stop_or_skip() {
    let err = check_finite(7, f64::NAN, 1.0, OnNonFinite::Stop).expect_err("must stop");
    assert!(err.to_string().starts_with("step 7: loss is NaN"), "{err}");
    let err = check_finite(8, 1.0, f64::INFINITY, OnNonFinite::Stop).expect_err("must stop");
    assert!(
        err.to_string().contains("step 8: gradient norm is inf"),
        "{err}"
    );
    assert!(!check_finite(9, f64::NAN, 1.0, OnNonFinite::Skip).expect("skip"));
    assert!(check_finite(9, 1.0, 1.0, OnNonFinite::Stop).expect("finite"));
}

#[test]
fn interrupted_checkpoint_writes_leave_nothing_that_looks_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = TrainState {
        format_version: TRAIN_STATE_VERSION,
        step: 5,
        optimizer_steps: 5,
        total_steps: 10,
        schedule: ScheduleConfig::default(),
        data: tiller_data::DataPosition {
            epoch: 0,
            index: 3,
            seed: 1,
            num_examples: 9,
        },
        rng: 17,
        num_tokens: 100,
    };
    let failed: Result<(), ModelError> =
        tiller_model::atomic::write_dir(&dir.path().join("checkpoint-6"), |tmp| {
            state.write(tmp)?;
            Err(ModelError::InvalidArgument("disk full".into()))
        });
    let e = failed.unwrap_err().to_string();
    assert!(e.contains("disk full"), "{e}");
    assert!(!dir.path().join("checkpoint-6").exists());
    tiller_model::atomic::write_dir(&dir.path().join("checkpoint-5"), |tmp| state.write(tmp))
        .expect("write");
    let found = list_checkpoints(dir.path()).expect("list");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, 5);
    assert_eq!(TrainState::read(&found[0].1).expect("read"), state);
}
