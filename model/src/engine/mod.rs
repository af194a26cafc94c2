//! The decode engine: one running batch that sequences join between decode steps and
//! leave as soon as they finish (continuous batching). Every caller of generation —
//! `tiller generate`, evaluation, `annotate generate`, RL rollouts and `tiller serve` —
//! runs on it, `generate::generate` being a thin wrapper.
//!
//! Invariants:
//! - Each sequence's keys start at position 0 of its own cache row; prompts joining at one
//!   step are prefilled together, right-padded (a causal mask keeps pads out of every real
//!   token's view), so greedy tokens do not depend on what else is running (within f32
//!   rounding).
//! - The n samples of one prompt (`add` with n `SeqParams`) share one prefill: its keys
//!   are copied into n rows (GRPO/RLOO groups, `n` in the API).
//! - Each sequence samples with its own parameters and its own seeded RNG.
//! - A cancelled sequence leaves at the start of the next `step`.
//!
//! [`EngineOptions`] can switch finished-row dropping and prefix sharing off, so that
//! `tiller bench engine` measures what each brings; the defaults are the real behaviour.

mod seq;
pub mod stop;

use std::collections::{HashSet, VecDeque};

use tch::{Kind, Tensor};
use tiller_data::Tokenizer;

use crate::checkpoint::CausalLm;
use crate::error::{ModelError, Result};
use crate::generate::Generated;
use crate::kv_cache::KvCache;
use crate::sampling::{choose_tokens_per_row, top_logprobs, Sampling};
use seq::Seq;
pub use seq::SeqParams;

/// What a `step` reports, in order, for each sequence it touched.
#[derive(Debug, Clone)]
pub enum Event {
    /// A sampled token. `text` is the new text that can be shown now (text that could
    /// still turn into a stop string is held back until it is clear).
    Token {
        id: u64,
        token: u32,
        logprob: f32,
        /// The most likely alternatives, when the sequence asked for them.
        top_logprobs: Vec<(u32, f32)>,
        text: String,
    },
    /// The sequence is done and has left the batch; `text` is its last unstreamed text.
    Finished {
        id: u64,
        prompt_tokens: usize,
        generated: Generated,
        text: String,
    },
}

/// How the engine batches. The defaults are what every caller runs; the off switches
/// exist to measure each gain on its own (`tiller bench engine`), with the same outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// A finished sequence leaves the batch at once. Off: it is reported as finished but
    /// its row keeps being computed until every running sequence has finished, as in a
    /// fixed batch (or until its row reaches the context window).
    pub drop_finished: bool,
    /// The n samples of one prompt share one prefill. Off: the prompt is prefilled once
    /// per sample, in rows of the same prefill batch.
    pub share_prefix: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            drop_finished: true,
            share_prefix: true,
        }
    }
}

struct Group {
    prompt: Vec<u32>,
    seqs: Vec<Seq>,
}

pub struct Engine<'m> {
    lm: &'m CausalLm,
    tokenizer: &'m Tokenizer,
    max_running: usize,
    options: EngineOptions,
    waiting: VecDeque<Group>,
    /// Row `i` of `cache` and of `logits` belongs to `running[i]`.
    running: Vec<Seq>,
    cache: KvCache,
    /// Next-token logits of each running sequence, (running, vocab).
    logits: Option<Tensor>,
    cancelled: HashSet<u64>,
    next_id: u64,
}

impl<'m> Engine<'m> {
    /// An engine that runs at most `max_running` sequences at once (the rest wait).
    pub fn new(lm: &'m CausalLm, tokenizer: &'m Tokenizer, max_running: usize) -> Self {
        Self::with_options(lm, tokenizer, max_running, EngineOptions::default())
    }

    /// As `new`, batching as `options` says.
    pub fn with_options(
        lm: &'m CausalLm,
        tokenizer: &'m Tokenizer,
        max_running: usize,
        options: EngineOptions,
    ) -> Self {
        Engine {
            lm,
            tokenizer,
            max_running: max_running.max(1),
            options,
            waiting: VecDeque::new(),
            running: vec![],
            cache: KvCache::empty(&lm.config, lm.kind(), lm.device()),
            logits: None,
            cancelled: HashSet::new(),
            next_id: 0,
        }
    }

    /// Queues `prompt` with one `SeqParams` per sample; returns the samples' sequence ids.
    /// The samples join the running batch at the next step with room for all of them.
    pub fn add(&mut self, prompt: Vec<u32>, samples: Vec<SeqParams>) -> Result<Vec<u64>> {
        if prompt.is_empty() {
            return Err(ModelError::InvalidArgument("the prompt is empty".into()));
        }
        let context = self.lm.config.max_position_embeddings;
        let longest = samples.iter().map(|s| s.max_new_tokens).max().unwrap_or(0);
        if prompt.len() + longest > context {
            return Err(ModelError::ContextOverflow {
                index: 0,
                tokens: prompt.len(),
                max_new_tokens: longest,
                context,
            });
        }
        let seqs: Vec<Seq> = samples
            .into_iter()
            .map(|params| {
                self.next_id += 1;
                Seq::new(self.next_id, params, prompt.len())
            })
            .collect();
        let ids = seqs.iter().map(|s| s.id).collect();
        self.waiting.push_back(Group { prompt, seqs });
        Ok(ids)
    }

    /// Frees sequence `id` at the next step (a client that went away).
    pub fn cancel(&mut self, id: u64) {
        self.cancelled.insert(id);
    }

    /// Sequences in the running batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Sequences queued to join.
    pub fn waiting(&self) -> usize {
        self.waiting.iter().map(|g| g.seqs.len()).sum()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Admits waiting prompts, samples one token for every running sequence, lets finished
    /// ones leave, and runs one decode step for the rest.
    pub fn step(&mut self) -> Result<Vec<Event>> {
        tch::no_grad(|| self.step_no_grad())
    }

    fn step_no_grad(&mut self) -> Result<Vec<Event>> {
        let mut events = vec![];
        self.drop_cancelled();
        let mut joining = vec![];
        let mut rows = self.running.len();
        while let Some(group) = self.waiting.front() {
            let fits = rows + group.seqs.len() <= self.max_running;
            if !fits && rows > 0 {
                break;
            }
            rows += group.seqs.len();
            if let Some(group) = self.waiting.pop_front() {
                joining.push(group);
            }
        }
        self.admit(joining, &mut events)?;
        let Some(logits) = self.logits.take() else {
            return Ok(events);
        };
        let samplings: Vec<Sampling> = self.running.iter().map(|s| s.params.sampling).collect();
        let mut rngs: Vec<_> = self.running.iter().map(|s| s.rng.clone()).collect();
        let (ids, logprobs) = choose_tokens_per_row(&logits, &samplings, &mut rngs)?;
        for (row, seq) in self.running.iter_mut().enumerate() {
            if seq.reported {
                continue; // finished, kept computing (drop_finished off)
            }
            seq.rng = rngs[row].clone();
            let token = ids[row] as u32;
            let top = match seq.params.top_logprobs {
                0 => vec![],
                k => top_logprobs(&logits.get(row as i64), seq.params.sampling, k)?,
            };
            let text = seq.push(token, logprobs[row], self.tokenizer)?;
            events.push(Event::Token {
                id: seq.id,
                token,
                logprob: logprobs[row],
                top_logprobs: top,
                text,
            });
        }
        if self.options.drop_finished {
            for mut seq in self.remove_rows(|s, _| s.finish.is_some()).0 {
                events.push(finished(self.tokenizer, &mut seq)?);
            }
        } else {
            self.keep_finished(&mut events)?;
        }
        self.decode()?;
        Ok(events)
    }

    /// `drop_finished` off: newly finished sequences are reported but keep their rows; the
    /// rows leave together once every running sequence has finished, or one by one when a
    /// row would outgrow the context window.
    fn keep_finished(&mut self, events: &mut Vec<Event>) -> Result<()> {
        for seq in &mut self.running {
            if seq.finish.is_some() && !seq.reported {
                seq.reported = true;
                events.push(finished(self.tokenizer, seq)?);
            }
        }
        let all_done = self.running.iter().all(|s| s.reported);
        let context = self.lm.config.max_position_embeddings as i64;
        self.remove_rows(|s, len| s.reported && (all_done || len + 1 >= context));
        Ok(())
    }

    /// Cancelled sequences leave: running rows, and samples still waiting.
    fn drop_cancelled(&mut self) {
        if self.cancelled.is_empty() {
            return;
        }
        let cancelled = std::mem::take(&mut self.cancelled);
        for group in &mut self.waiting {
            group.seqs.retain(|s| !cancelled.contains(&s.id));
        }
        self.waiting.retain(|g| !g.seqs.is_empty());
        let (_, order) = self.remove_rows(|s, _| cancelled.contains(&s.id));
        if let (Some(order), Some(logits)) = (order, self.logits.take()) {
            let index = Tensor::from_slice(&order).to_device(logits.device());
            self.logits = Some(logits.index_select(0, &index));
        }
    }

    /// Removes the running sequences `leave` picks, given each one and its row's filled
    /// length (swap-remove, as the cache does); returns them and, when any left, which old
    /// row each remaining row was.
    fn remove_rows(&mut self, leave: impl Fn(&Seq, i64) -> bool) -> (Vec<Seq>, Option<Vec<i64>>) {
        // Decided before removing: rows below the one removed never move.
        let leaving: Vec<bool> = (self.running.iter().zip(self.cache.lens()))
            .map(|(s, &len)| leave(s, len))
            .collect();
        let mut order: Vec<i64> = (0..self.running.len() as i64).collect();
        let mut removed = vec![];
        for row in (0..self.running.len()).rev() {
            if leaving[row] {
                self.cache.swap_remove(row);
                order.swap_remove(row);
                removed.push(self.running.swap_remove(row));
            }
        }
        removed.reverse();
        let order = (!removed.is_empty()).then_some(order);
        (removed, order)
    }

    /// Prefills the joining prompts together (right-padded: with a causal mask no real
    /// token sees a pad) and copies each prompt's keys into one row per sample. Samples
    /// that want no tokens finish at once.
    fn admit(&mut self, groups: Vec<Group>, events: &mut Vec<Event>) -> Result<()> {
        let mut joining = vec![];
        for Group { prompt, seqs } in groups {
            let (seqs, done): (Vec<Seq>, Vec<Seq>) =
                seqs.into_iter().partition(|s| s.params.max_new_tokens > 0);
            for mut seq in done {
                events.push(finished(self.tokenizer, &mut seq)?);
            }
            if self.options.share_prefix {
                if !seqs.is_empty() {
                    joining.push((prompt, seqs));
                }
            } else {
                joining.extend(seqs.into_iter().map(|s| (prompt.clone(), vec![s])));
            }
        }
        if joining.is_empty() {
            return Ok(());
        }
        let (lm, device) = (self.lm, self.lm.device());
        let b = joining.len() as i64;
        let longest = joining.iter().map(|(p, _)| p.len()).max().unwrap_or(1) as i64;
        let mut ids = vec![0i64; (b * longest) as usize];
        for (row, (prompt, _)) in joining.iter().enumerate() {
            for (j, &id) in prompt.iter().enumerate() {
                ids[row * longest as usize + j] = id as i64;
            }
        }
        let ids = Tensor::from_slice(&ids)
            .view([b, longest])
            .to_device(device);
        let positions = Tensor::arange(longest, (Kind::Int64, device))
            .view([1, longest])
            .expand([b, longest], false);
        let mut prefill = KvCache::new(&lm.config, b, longest, lm.kind(), device);
        let hidden = lm.model.forward(&ids, &positions, None, Some(&mut prefill));
        let lens: Vec<i64> = joining.iter().map(|(p, _)| p.len() as i64).collect();
        prefill.set_lens(&lens);
        let last = Tensor::from_slice(&lens.iter().map(|l| l - 1).collect::<Vec<_>>())
            .to_device(device)
            .view([b, 1, 1])
            .expand([b, 1, hidden.size()[2]], false);
        let logits = lm
            .model
            .logits(&hidden.gather(1, &last, false).squeeze_dim(1)); // (b, vocab)
        let mut parts = vec![];
        if let Some(old) = self.logits.take() {
            parts.push(old);
        }
        for (row, (_, mut seqs)) in joining.into_iter().enumerate() {
            let n = seqs.len() as i64;
            self.cache.push_rows(&prefill, row as i64, n);
            parts.push(logits.narrow(0, row as i64, 1).expand([n, -1], false));
            self.running.append(&mut seqs);
        }
        self.logits = Some(Tensor::cat(&parts, 0));
        Ok(())
    }

    /// One token for every running sequence at its own position: (b, 1) inputs, each row
    /// attending to its own filled keys only.
    fn decode(&mut self) -> Result<()> {
        if self.running.is_empty() {
            return Ok(());
        }
        let (lm, device) = (self.lm, self.lm.device());
        let b = self.running.len() as i64;
        let last: Vec<i64> = self
            .running
            .iter()
            .map(|s| s.tokens.last().map_or(0, |&t| t as i64))
            .collect();
        let lens = self.cache.lens().to_vec();
        let longest = lens.iter().copied().max().unwrap_or(0);
        self.cache.reserve(b, longest + 1);
        let input = Tensor::from_slice(&last).view([b, 1]).to_device(device);
        let positions = Tensor::from_slice(&lens).view([b, 1]).to_device(device);
        let ragged = lens.iter().any(|&l| l != longest);
        let mask = ragged.then(|| {
            // Row i may see keys 0..=lens[i] (its own filled keys and this step's).
            let keys = longest + 1;
            Tensor::arange(keys, (Kind::Int64, device))
                .view([1, keys])
                .le_tensor(&positions)
                .view([b, 1, 1, keys])
        });
        let hidden = lm
            .model
            .forward(&input, &positions, mask.as_ref(), Some(&mut self.cache));
        self.logits = Some(lm.model.logits(&hidden.select(1, 0)));
        Ok(())
    }
}

/// The `Finished` event of a sequence that is done.
fn finished(tokenizer: &Tokenizer, seq: &mut Seq) -> Result<Event> {
    let (generated, text) = seq.finish(tokenizer)?;
    Ok(Event::Finished {
        id: seq.id,
        prompt_tokens: seq.prompt_tokens,
        generated,
        text,
    })
}
