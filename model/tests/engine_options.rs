//! The engine's off switches (`EngineOptions`, measured by `tiller bench engine`) change
//! how much is computed, never what comes out: with finished-row dropping or prefix
//! sharing off, greedy and seeded sampled tokens equal the defaults', on a tiny model.

use std::collections::HashMap;

use tiller_data::Tokenizer;
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::{CausalLm, Engine, EngineOptions, Event, Generated, Sampling, SeqParams};

fn tiny() -> (tempfile::TempDir, CausalLm, Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    let lm = write_tiny_checkpoint(dir.path(), 7).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    (dir, lm, tokenizer)
}

fn params(max_new_tokens: usize, sampling: Sampling, seed: u64) -> SeqParams {
    SeqParams {
        max_new_tokens,
        sampling,
        seed,
        stop_token_ids: vec![],
        stop_strings: vec![],
        top_logprobs: 0,
    }
}

/// Runs `requests` (prompt, samples) to the end; returns every result in request order
/// and the largest number of rows that were running at once after a sequence finished.
fn run(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    options: EngineOptions,
    requests: &[(Vec<u32>, Vec<SeqParams>)],
) -> (Vec<Generated>, usize) {
    let mut engine = Engine::with_options(lm, tokenizer, 64, options);
    let mut order = vec![];
    for (prompt, samples) in requests {
        order.extend(engine.add(prompt.clone(), samples.clone()).unwrap());
    }
    let mut done: HashMap<u64, Generated> = HashMap::new();
    let mut running_after_a_finish = 0;
    while !engine.is_idle() {
        for event in engine.step().unwrap() {
            if let Event::Finished { id, generated, .. } = event {
                done.insert(id, generated);
            }
        }
        if !done.is_empty() {
            running_after_a_finish = running_after_a_finish.max(engine.running());
        }
    }
    let results = order.iter().map(|id| done.remove(id).unwrap()).collect();
    (results, running_after_a_finish)
}

fn assert_same(a: &[Generated], b: &[Generated]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.tokens, y.tokens, "sequence {i}");
        assert_eq!(x.finish, y.finish, "sequence {i}");
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-4, "sequence {i}: logprob {p} vs {q}");
        }
    }
}

#[test]
fn keeping_finished_rows_gives_the_same_greedy_tokens() {
    let (_dir, lm, tokenizer) = tiny();
    let texts = ["hi", "a much longer prompt here", "mid length", "x"];
    let requests: Vec<_> = texts
        .iter()
        .zip([3, 25, 9, 16])
        .map(|(t, n)| {
            let prompt = tokenizer.encode(t, false).unwrap();
            (prompt, vec![params(n, Sampling::Greedy, 0)])
        })
        .collect();
    let (dropped, rows_dropping) = run(&lm, &tokenizer, EngineOptions::default(), &requests);
    let kept_options = EngineOptions {
        drop_finished: false,
        ..EngineOptions::default()
    };
    let (kept, rows_keeping) = run(&lm, &tokenizer, kept_options, &requests);
    assert_same(&dropped, &kept);
    assert_eq!(
        dropped.iter().map(|g| g.tokens.len()).collect::<Vec<_>>(),
        [3, 25, 9, 16]
    );
    // The switch does what it says: finished rows left at once, or stayed to the end.
    assert_eq!(rows_dropping, 3);
    assert_eq!(rows_keeping, 4);
}

#[test]
fn a_kept_row_leaves_at_the_context_window() {
    let (_dir, lm, tokenizer) = tiny();
    let context = lm.config.max_position_embeddings;
    // The long prompt finishes first and would outgrow the window while the short one
    // runs on; its row must leave instead of reaching position `context`.
    let long = tokenizer.encode(&"x".repeat(context - 4), false).unwrap();
    assert_eq!(long.len(), context - 4);
    let short = tokenizer.encode("short", false).unwrap();
    let requests = vec![
        (long, vec![params(2, Sampling::Greedy, 0)]),
        (short, vec![params(40, Sampling::Greedy, 0)]),
    ];
    let options = EngineOptions {
        drop_finished: false,
        ..EngineOptions::default()
    };
    let (kept, _) = run(&lm, &tokenizer, options, &requests);
    let (dropped, _) = run(&lm, &tokenizer, EngineOptions::default(), &requests);
    assert_same(&dropped, &kept);
    assert_eq!(kept[1].tokens.len(), 40);
}

#[test]
fn prefilling_each_sample_gives_the_same_tokens_as_sharing_the_prefix() {
    let (_dir, lm, tokenizer) = tiny();
    let hot = Sampling::Random {
        temperature: 1.2,
        top_k: Some(30),
        top_p: Some(0.95),
    };
    let requests: Vec<_> = ["group one", "the second group's prompt"]
        .iter()
        .enumerate()
        .map(|(g, t)| {
            let prompt = tokenizer.encode(t, false).unwrap();
            let mut samples: Vec<_> = (0..4).map(|k| params(12, hot, 10 * g as u64 + k)).collect();
            samples.push(params(12, Sampling::Greedy, 0));
            (prompt, samples)
        })
        .collect();
    let (shared, _) = run(&lm, &tokenizer, EngineOptions::default(), &requests);
    let separate_options = EngineOptions {
        share_prefix: false,
        ..EngineOptions::default()
    };
    let (separate, _) = run(&lm, &tokenizer, separate_options, &requests);
    assert_same(&shared, &separate);
    let distinct: std::collections::HashSet<_> = shared[..4].iter().map(|g| &g.tokens).collect();
    assert!(distinct.len() > 1, "four seeds gave one sample");
}
