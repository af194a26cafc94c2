//! Generation for a list of prompts with a progress bar: `tiller generate`, `tiller
//! annotate generate` and the pipeline's `annotate-queue` stage sample through it.

use anyhow::Result;
use tiller_data::Tokenizer;
use tiller_model::{generate, CausalLm, Generated, GenerationConfig};

/// Generates for every prompt, in batches of prompts of similar length (less padding),
/// with a progress bar. Each row is seeded by its index in `prompts`, so the batching does
/// not change samples. Results are in input order.
pub fn generate_all(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    batch_size: usize,
    label: &str,
) -> Result<Vec<Generated>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());
    let bar = crate::progress::bar(prompts.len() as u64, label);
    let mut results: Vec<Option<Generated>> = vec![None; prompts.len()];
    let started = std::time::Instant::now();
    let mut new_tokens = 0usize;
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        for (&i, g) in chunk
            .iter()
            .zip(generate(lm, tokenizer, &batch, chunk, config)?)
        {
            new_tokens += g.tokens.len();
            results[i] = Some(g);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    tracing::info!(
        "{label}: {} completions, {new_tokens} new tokens in {elapsed:.1}s ({:.1} tokens/s)",
        prompts.len(),
        new_tokens as f64 / elapsed.max(1e-9)
    );
    Ok(results.into_iter().flatten().collect())
}
