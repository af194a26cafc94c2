//! Mechanics on a tiny random model: cache equivalence, batching, sampling, checkpoints.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use tiller_data::Tokenizer;
use tiller_model::checkpoint::{save_safetensors, with_torch_seed};
use tiller_model::testing::{tiny_config, write_tiny_checkpoint};
use tiller_model::{generate, CausalLm, GenerationConfig, KvCache, ModelError, Sampling};

fn random_ids(b: i64, t: i64, seed: i64) -> Tensor {
    with_torch_seed(seed, || {
        Tensor::randint(250, [b, t], (Kind::Int64, Device::Cpu))
    })
}

fn positions(b: i64, t: i64, start: i64) -> Tensor {
    Tensor::arange_start(start, start + t, (Kind::Int64, Device::Cpu)).expand([b, t], false)
}

#[test]
fn forward_gives_logits_of_the_right_shape() {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 1);
    let ids = random_ids(3, 7, 0);
    let hidden = lm.model.forward(&ids, &positions(3, 7, 0), None, None);
    assert_eq!(hidden.size(), [3, 7, 64]);
    assert_eq!(lm.model.logits(&hidden).size(), [3, 7, 259]);
}

#[test]
fn kv_cache_decoding_equals_full_forward() {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 2);
    let (b, t, prefix) = (2, 12, 5);
    let ids = random_ids(b, t, 1);
    let full = lm
        .model
        .logits(&lm.model.forward(&ids, &positions(b, t, 0), None, None));

    let mut cache = KvCache::new(&lm.config, b, t, Kind::Float, Device::Cpu);
    let mut steps = vec![lm.model.logits(&lm.model.forward(
        &ids.narrow(1, 0, prefix),
        &positions(b, prefix, 0),
        None,
        Some(&mut cache),
    ))];
    for i in prefix..t {
        let step = lm.model.forward(
            &ids.narrow(1, i, 1),
            &positions(b, 1, i),
            None,
            Some(&mut cache),
        );
        steps.push(lm.model.logits(&step));
    }
    let incremental = Tensor::cat(&steps, 1);
    let diff = (full - incremental).abs().max().double_value(&[]);
    assert!(diff <= 1e-4, "max abs diff {diff}");
    assert_eq!(cache.len(), t);
}

#[test]
fn a_multi_token_block_after_cached_positions_is_causal() {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 3);
    let ids = random_ids(1, 10, 2);
    let full = lm
        .model
        .logits(&lm.model.forward(&ids, &positions(1, 10, 0), None, None));
    let mut cache = KvCache::new(&lm.config, 1, 10, Kind::Float, Device::Cpu);
    let _prefix = lm.model.forward(
        &ids.narrow(1, 0, 4),
        &positions(1, 4, 0),
        None,
        Some(&mut cache),
    );
    let rest = lm.model.logits(&lm.model.forward(
        &ids.narrow(1, 4, 6),
        &positions(1, 6, 4),
        None,
        Some(&mut cache),
    ));
    let diff = (full.narrow(1, 4, 6) - rest).abs().max().double_value(&[]);
    assert!(diff <= 1e-4, "max abs diff {diff}");
}

fn tiny() -> (tempfile::TempDir, CausalLm, Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    let lm = write_tiny_checkpoint(dir.path(), 4).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    (dir, lm, tokenizer)
}

fn prompts(tokenizer: &Tokenizer) -> Vec<Vec<u32>> {
    ["hi", "a much longer prompt here", "mid length", "x"]
        .iter()
        .map(|p| tokenizer.encode(p, false).unwrap())
        .collect()
}

#[test]
fn batched_left_padded_generation_equals_one_at_a_time() {
    let (_dir, lm, tokenizer) = tiny();
    let prompts = prompts(&tokenizer);
    let config = GenerationConfig {
        stop_token_ids: vec![],
        ..GenerationConfig::greedy(16, &tokenizer)
    };
    let indices: Vec<usize> = (0..prompts.len()).collect();
    let batched = generate(&lm, &tokenizer, &prompts, &indices, &config).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let alone = generate(&lm, &tokenizer, std::slice::from_ref(p), &[i], &config).unwrap();
        assert_eq!(batched[i].tokens, alone[0].tokens, "prompt {i}");
        for (a, b) in batched[i].logprobs.iter().zip(&alone[0].logprobs) {
            assert!((a - b).abs() < 1e-4, "prompt {i}: logprob {a} vs {b}");
        }
        assert_eq!(batched[i].tokens.len(), 16);
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_batch_independent() {
    let (_dir, lm, tokenizer) = tiny();
    let prompts = prompts(&tokenizer);
    let indices: Vec<usize> = (0..prompts.len()).collect();
    let config = GenerationConfig {
        max_new_tokens: 12,
        sampling: Sampling::Random {
            temperature: 1.5,
            top_k: Some(50),
            top_p: Some(0.9),
        },
        seed: 7,
        stop_token_ids: vec![],
        stop_strings: vec![],
    };
    let a = generate(&lm, &tokenizer, &prompts, &indices, &config).unwrap();
    let b = generate(&lm, &tokenizer, &prompts, &indices, &config).unwrap();
    let alone = generate(&lm, &tokenizer, &prompts[2..3], &[2], &config).unwrap();
    assert_eq!(a[2].tokens, alone[0].tokens);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.tokens, y.tokens);
    }
    let other_seed = generate(
        &lm,
        &tokenizer,
        &prompts,
        &indices,
        &GenerationConfig { seed: 8, ..config },
    )
    .unwrap();
    assert!(
        a.iter().zip(&other_seed).any(|(x, y)| x.tokens != y.tokens),
        "seed had no effect"
    );
}

#[test]
fn generation_log_probs_equal_a_fresh_forward_pass() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("check the log probs", false).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 10,
        sampling: Sampling::Random {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        },
        seed: 3,
        stop_token_ids: vec![],
        stop_strings: vec![],
    };
    let g = generate(
        &lm,
        &tokenizer,
        std::slice::from_ref(&prompt),
        &[0],
        &config,
    )
    .unwrap()
    .remove(0);
    let all: Vec<i64> = prompt.iter().chain(&g.tokens).map(|&x| x as i64).collect();
    let ids = Tensor::from_slice(&all).unsqueeze(0);
    let t = all.len() as i64;
    let logits = lm
        .model
        .logits(&lm.model.forward(&ids, &positions(1, t, 0), None, None));
    let logp = logits.log_softmax(-1, Kind::Float).get(0);
    for (k, &tok) in g.tokens.iter().enumerate() {
        let pos = prompt.len() as i64 - 1 + k as i64;
        let expected = logp.get(pos).get(tok as i64).double_value(&[]);
        assert!(
            (expected - g.logprobs[k] as f64).abs() < 1e-4,
            "token {k}: {expected} vs {}",
            g.logprobs[k]
        );
    }
}

#[test]
fn generation_stops_on_eos_and_on_stop_strings() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("stop test", false).unwrap();
    let free = GenerationConfig {
        stop_token_ids: vec![],
        ..GenerationConfig::greedy(8, &tokenizer)
    };
    let g = generate(&lm, &tokenizer, std::slice::from_ref(&prompt), &[0], &free)
        .unwrap()
        .remove(0);
    // Stop on the third generated token, whatever it is.
    let third = g.tokens[2];
    let on_token = GenerationConfig {
        stop_token_ids: vec![third],
        ..free.clone()
    };
    let stopped = generate(
        &lm,
        &tokenizer,
        std::slice::from_ref(&prompt),
        &[0],
        &on_token,
    )
    .unwrap()
    .remove(0);
    let first_hit = g.tokens.iter().position(|&t| t == third).unwrap();
    assert_eq!(stopped.tokens, g.tokens[..=first_hit]);
    assert_eq!(stopped.finish, tiller_model::FinishReason::Eos);
    assert_eq!(
        stopped.text,
        tokenizer.decode(&g.tokens[..first_hit], true).unwrap()
    );

    let stop_text = g.text.chars().skip(1).take(2).collect::<String>();
    if !stop_text.is_empty() {
        let on_text = GenerationConfig {
            stop_strings: vec![stop_text.clone()],
            ..free
        };
        let s = generate(
            &lm,
            &tokenizer,
            std::slice::from_ref(&prompt),
            &[0],
            &on_text,
        )
        .unwrap()
        .remove(0);
        assert_eq!(s.finish, tiller_model::FinishReason::StopString);
        assert!(
            !s.text.contains(&stop_text),
            "{:?} still holds {stop_text:?}",
            s.text
        );
        assert!(g.text.starts_with(&s.text));
    }
}

#[test]
fn context_overflow_is_a_clear_error() {
    let (_dir, lm, tokenizer) = tiny();
    let long = vec![65u32; 500];
    let config = GenerationConfig::greedy(20, &tokenizer);
    let err = generate(&lm, &tokenizer, &[long], &[3], &config).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ContextOverflow {
                index: 3,
                tokens: 500,
                context: 512,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("context window of 512"), "{err}");
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let (dir, lm, _) = tiny();
    let loaded = CausalLm::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
    let (a, b) = (lm.vs.variables(), loaded.vs.variables());
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs after save/load");
    }
    // And once more through a second save.
    let again = tempfile::tempdir().unwrap();
    loaded.save(again.path(), Some(dir.path())).unwrap();
    let bytes = |p: &std::path::Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(bytes(dir.path()), bytes(again.path()));
    assert!(again.path().join("tokenizer.json").exists());
}

fn rewrite_weights(dir: &std::path::Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let mut tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    edit(&mut tensors);
    save_safetensors(&tensors, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn missing_extra_and_misshapen_tensors_are_errors_naming_them() {
    let (dir, _, _) = tiny();
    rewrite_weights(dir.path(), |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
    });
    let err = CausalLm::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("model.layers.1.mlp.up_proj.weight"),
        "{err}"
    );

    let (dir, _, _) = tiny();
    rewrite_weights(dir.path(), |t| {
        t.insert(
            "model.layers.9.extra.weight".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        );
    });
    let err = CausalLm::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unexpected") && err.contains("model.layers.9.extra.weight"),
        "{err}"
    );

    let (dir, _, _) = tiny();
    rewrite_weights(dir.path(), |t| {
        t.insert(
            "model.norm.weight".into(),
            Tensor::ones([3], (Kind::Float, Device::Cpu)),
        );
    });
    let err = CausalLm::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.norm.weight") && err.contains("[3]") && err.contains("[64]"),
        "{err}"
    );
}

#[test]
fn unknown_model_type_is_a_clear_error() {
    let (dir, _, _) = tiny();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(&path, text).unwrap();
    let err = CausalLm::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("gpt_neox") && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn bf16_model_runs_and_stays_close_to_f32() {
    let (dir, lm, _) = tiny();
    let bf = CausalLm::load(dir.path(), Device::Cpu, Kind::BFloat16).unwrap();
    let ids = random_ids(1, 6, 5);
    let a = lm
        .model
        .logits(&lm.model.forward(&ids, &positions(1, 6, 0), None, None));
    let b = bf
        .model
        .logits(&bf.model.forward(&ids, &positions(1, 6, 0), None, None));
    assert_eq!(b.kind(), Kind::Float);
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 0.05, "bf16 drifted by {diff}");
}
