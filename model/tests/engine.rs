//! The decode engine on a tiny random model: continuous batching does not change greedy
//! tokens (batch invariance), shared prefills equal separate ones, per-sequence sampling,
//! cancellation, streamed text, and the `generate` wrapper's option fixes.

use std::collections::HashMap;

use tiller_data::Tokenizer;
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::{
    generate, CausalLm, Engine, Event, Generated, GenerationConfig, Sampling, SamplingOption,
    SeqParams,
};

fn tiny() -> (tempfile::TempDir, CausalLm, Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    let lm = write_tiny_checkpoint(dir.path(), 4).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    (dir, lm, tokenizer)
}

fn greedy(max_new_tokens: usize) -> SeqParams {
    SeqParams {
        max_new_tokens,
        sampling: Sampling::Greedy,
        seed: 0,
        stop_token_ids: vec![],
        stop_strings: vec![],
        top_logprobs: 0,
    }
}

/// Runs the engine to the end; returns each id's result and its streamed text.
fn drain(engine: &mut Engine) -> HashMap<u64, (Generated, String)> {
    let mut streamed: HashMap<u64, String> = HashMap::new();
    let mut done = HashMap::new();
    while !engine.is_idle() {
        for event in engine.step().unwrap() {
            match event {
                Event::Token { id, text, .. } => streamed.entry(id).or_default().push_str(&text),
                Event::Finished {
                    id,
                    generated,
                    text,
                    ..
                } => {
                    let mut all = streamed.remove(&id).unwrap_or_default();
                    all.push_str(&text);
                    done.insert(id, (generated, all));
                }
            }
        }
    }
    done
}

fn alone(lm: &CausalLm, tokenizer: &Tokenizer, prompt: &[u32], params: SeqParams) -> Generated {
    let mut engine = Engine::new(lm, tokenizer, 1);
    let id = engine.add(prompt.to_vec(), vec![params]).unwrap()[0];
    drain(&mut engine).remove(&id).unwrap().0
}

#[test]
fn greedy_tokens_do_not_depend_on_who_joins_or_leaves_the_batch() {
    let (_dir, lm, tokenizer) = tiny();
    let texts = [
        "hi",
        "a much longer prompt here",
        "mid length",
        "x",
        "other",
    ];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.encode(t, false).unwrap())
        .collect();
    let lengths = [12, 5, 20, 9, 14];
    let mut engine = Engine::new(&lm, &tokenizer, 8);
    let mut ids = vec![];
    // Two start together; the others join after 3 and 7 steps, while rows are mid-flight
    // and some have already left (length 5).
    let mut done = HashMap::new();
    for (i, p) in prompts.iter().enumerate() {
        ids.push(engine.add(p.clone(), vec![greedy(lengths[i])]).unwrap()[0]);
        if i == 1 || i == 3 {
            let steps = if i == 1 { 3 } else { 4 };
            for _ in 0..steps {
                for event in engine.step().unwrap() {
                    if let Event::Finished { id, generated, .. } = event {
                        done.insert(id, generated);
                    }
                }
            }
        }
    }
    done.extend(drain(&mut engine).into_iter().map(|(id, (g, _))| (id, g)));
    for (i, p) in prompts.iter().enumerate() {
        let single = alone(&lm, &tokenizer, p, greedy(lengths[i]));
        let batched = &done[&ids[i]];
        assert_eq!(batched.tokens, single.tokens, "prompt {i}");
        assert_eq!(batched.tokens.len(), lengths[i]);
        for (a, b) in batched.logprobs.iter().zip(&single.logprobs) {
            assert!((a - b).abs() < 1e-4, "prompt {i}: logprob {a} vs {b}");
        }
    }
}

#[test]
fn n_samples_sharing_one_prefill_equal_separate_requests() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("shared prefix", false).unwrap();
    let sampled = |seed| SeqParams {
        sampling: Sampling::Random {
            temperature: 1.3,
            top_k: Some(40),
            top_p: Some(0.95),
        },
        seed,
        ..greedy(10)
    };
    let mut engine = Engine::new(&lm, &tokenizer, 4);
    let ids = engine
        .add(prompt.clone(), vec![sampled(1), sampled(2), sampled(3)])
        .unwrap();
    let done = drain(&mut engine);
    let mut distinct = std::collections::HashSet::new();
    for (k, id) in ids.iter().enumerate() {
        let single = alone(&lm, &tokenizer, &prompt, sampled(k as u64 + 1));
        assert_eq!(done[id].0.tokens, single.tokens, "sample {k}");
        distinct.insert(single.tokens);
    }
    assert!(distinct.len() > 1, "three seeds gave one sample");
}

#[test]
fn each_sequence_samples_with_its_own_parameters() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("mixed", false).unwrap();
    let hot = SeqParams {
        sampling: Sampling::Random {
            temperature: 2.0,
            top_k: None,
            top_p: None,
        },
        seed: 11,
        ..greedy(12)
    };
    let mut engine = Engine::new(&lm, &tokenizer, 4);
    let g = engine.add(prompt.clone(), vec![greedy(12)]).unwrap()[0];
    let h = engine.add(prompt.clone(), vec![hot.clone()]).unwrap()[0];
    let done = drain(&mut engine);
    assert_eq!(
        done[&g].0.tokens,
        alone(&lm, &tokenizer, &prompt, greedy(12)).tokens
    );
    assert_eq!(
        done[&h].0.tokens,
        alone(&lm, &tokenizer, &prompt, hot).tokens
    );
}

#[test]
fn a_cancelled_sequence_leaves_and_the_others_are_unchanged() {
    let (_dir, lm, tokenizer) = tiny();
    let a = tokenizer.encode("first one", false).unwrap();
    let b = tokenizer.encode("second", false).unwrap();
    let mut engine = Engine::new(&lm, &tokenizer, 4);
    let ia = engine.add(a.clone(), vec![greedy(30)]).unwrap()[0];
    let ib = engine.add(b.clone(), vec![greedy(15)]).unwrap()[0];
    for _ in 0..3 {
        engine.step().unwrap();
    }
    assert_eq!(engine.running(), 2);
    engine.cancel(ia);
    engine.step().unwrap();
    assert_eq!(engine.running(), 1);
    let done = drain(&mut engine);
    assert!(
        !done.contains_key(&ia),
        "a cancelled sequence reported a result"
    );
    assert_eq!(
        done[&ib].0.tokens,
        alone(&lm, &tokenizer, &b, greedy(15)).tokens
    );
}

#[test]
fn streamed_text_equals_the_final_text_and_stops_before_the_stop_string() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("stream me", false).unwrap();
    let free = alone(&lm, &tokenizer, &prompt, greedy(16));
    let stop: String = free.text.chars().skip(3).take(2).collect();
    assert!(
        !stop.is_empty(),
        "the free text {:?} is too short",
        free.text
    );
    let mut engine = Engine::new(&lm, &tokenizer, 2);
    let plain = engine.add(prompt.clone(), vec![greedy(16)]).unwrap()[0];
    let params = SeqParams {
        stop_strings: vec![stop.clone()],
        top_logprobs: 3,
        ..greedy(16)
    };
    let stopped = engine.add(prompt.clone(), vec![params]).unwrap()[0];
    let done = drain(&mut engine);
    assert_eq!(done[&plain].1, done[&plain].0.text);
    assert_eq!(done[&plain].0.text, free.text);
    let (g, streamed) = &done[&stopped];
    assert_eq!(g.finish, tiller_model::FinishReason::StopString);
    assert_eq!(streamed, &g.text);
    assert!(!g.text.contains(&stop) && free.text.starts_with(&g.text));
}

#[test]
fn top_logprobs_are_sorted_and_hold_the_greedy_token() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("alternatives", false).unwrap();
    let mut engine = Engine::new(&lm, &tokenizer, 1);
    engine
        .add(
            prompt,
            vec![SeqParams {
                top_logprobs: 5,
                ..greedy(4)
            }],
        )
        .unwrap();
    let mut seen = 0;
    while !engine.is_idle() {
        for event in engine.step().unwrap() {
            if let Event::Token {
                token,
                logprob,
                top_logprobs,
                ..
            } = event
            {
                seen += 1;
                assert_eq!(top_logprobs.len(), 5);
                assert_eq!(top_logprobs[0].0, token);
                assert!((top_logprobs[0].1 - logprob).abs() < 1e-5);
                assert!(top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1));
            }
        }
    }
    assert_eq!(seen, 4);
}

#[test]
fn top_k_zero_is_off_and_bad_temperatures_are_errors() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("top k zero", false).unwrap();
    let off = Sampling::try_from_options(0.7, Some(0), None).unwrap();
    assert_eq!(
        off,
        Sampling::Random {
            temperature: 0.7,
            top_k: None,
            top_p: None
        }
    );
    let config = GenerationConfig {
        max_new_tokens: 6,
        sampling: Sampling::Random {
            temperature: 0.7,
            top_k: Some(0),
            top_p: None,
        },
        seed: 5,
        stop_token_ids: vec![],
        stop_strings: vec![],
    };
    let g = generate(&lm, &tokenizer, &[prompt], &[0], &config).unwrap();
    assert_eq!(g[0].tokens.len(), 6);
    for t in [f64::NAN, -0.5, f64::INFINITY] {
        let (option, message) = Sampling::try_from_options(t, None, None).unwrap_err();
        assert_eq!(option, SamplingOption::Temperature, "{t}");
        assert!(message.contains(">= 0"), "{message}");
    }
    let (option, _) = Sampling::try_from_options(1.0, None, Some(0.0)).unwrap_err();
    assert_eq!(option, SamplingOption::TopP);
}

#[test]
fn identical_prompts_in_generate_share_a_prefill_and_keep_their_row_seeds() {
    let (_dir, lm, tokenizer) = tiny();
    let prompt = tokenizer.encode("group", false).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 8,
        sampling: Sampling::Random {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        },
        seed: 9,
        stop_token_ids: vec![],
        stop_strings: vec![],
    };
    let group = vec![prompt.clone(); 4];
    let together = generate(&lm, &tokenizer, &group, &[0, 1, 2, 3], &config).unwrap();
    for (i, g) in together.iter().enumerate() {
        let one = generate(
            &lm,
            &tokenizer,
            std::slice::from_ref(&prompt),
            &[i],
            &config,
        )
        .unwrap();
        assert_eq!(g.tokens, one[0].tokens, "row {i}");
    }
}
