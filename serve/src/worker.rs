//! The engine thread of one model: it owns the model and steps the running batch. HTTP
//! handlers send it `Job`s over a channel and get tokens back over each job's own channel.
//! A job whose receiver is gone (the client disconnected) is cancelled, and its sequences
//! leave the batch at the next step. The thread ends when every job sender is dropped and
//! the batch is empty, so shutting the server down drains running requests first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use tiller_data::Tokenizer;
use tiller_model::{CausalLm, DType, Engine, Event, FinishReason, Lora, SeqParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ServeError;
use crate::metrics::Metrics;

/// One request: a prompt and one `SeqParams` per sample (`n`).
pub struct Job {
    pub prompt: Vec<u32>,
    pub samples: Vec<SeqParams>,
    pub tx: UnboundedSender<Out>,
    pub submitted: Instant,
}

/// What the engine thread sends back for a job; `index` is the sample (choice) index.
#[derive(Debug)]
pub enum Out {
    Token {
        index: usize,
        token: u32,
        logprob: f32,
        top_logprobs: Vec<(u32, f32)>,
        text: String,
    },
    Finished {
        index: usize,
        finish: FinishReason,
        text: String,
        tokens: Vec<u32>,
        prompt_tokens: usize,
    },
    Failed(String),
}

/// What handlers need to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context: usize,
    pub stop_token_ids: Vec<u32>,
}

/// Where to load a model from.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub name: String,
    pub dir: PathBuf,
    /// A LoRA adapter directory applied over `dir`.
    pub adapter: Option<PathBuf>,
    pub device: tch::Device,
    pub dtype: DType,
    pub max_running: usize,
}

/// Starts the engine thread; returns once the model is loaded (or failed to load).
pub fn spawn(
    spec: LoadSpec,
    metrics: Arc<Metrics>,
) -> Result<(mpsc::Sender<Job>, JoinHandle<()>, ModelInfo), ServeError> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let name = spec.name.clone();
    let thread = std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn(move || {
            let loaded = load(&spec);
            let (lm, tokenizer) = match loaded {
                Ok(ok) => ok,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut stop_token_ids = lm.config.eos_token_ids();
            if !stop_token_ids.contains(&tokenizer.eos_id) {
                stop_token_ids.push(tokenizer.eos_id);
            }
            let info = ModelInfo {
                context: lm.config.max_position_embeddings,
                stop_token_ids,
            };
            if ready_tx.send(Ok(info)).is_err() {
                return;
            }
            run(&lm, &tokenizer, spec.max_running, &jobs_rx, &metrics);
        })?;
    match ready_rx.recv() {
        Ok(Ok(info)) => Ok((jobs_tx, thread, info)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServeError::EngineGone(name)),
    }
}

fn load(spec: &LoadSpec) -> Result<(CausalLm, Tokenizer), ServeError> {
    let mut lm = CausalLm::load(&spec.dir, spec.device, spec.dtype.kind()).map_err(|source| {
        ServeError::Load {
            dir: spec.dir.clone(),
            source,
        }
    })?;
    if let Some(adapter) = &spec.adapter {
        crate::adapter::check_base(&spec.name, adapter, &spec.dir)?;
        Lora::load(&mut lm, adapter).map_err(|source| ServeError::Adapter {
            name: spec.name.clone(),
            dir: adapter.clone(),
            source: Box::new(source),
        })?;
    }
    let tokenizer = Tokenizer::from_dir(&spec.dir).map_err(|source| ServeError::Tokenizer {
        dir: spec.dir.clone(),
        source,
    })?;
    tracing::info!(
        "model `{}` loaded from {}{}",
        spec.name,
        spec.dir.display(),
        spec.adapter
            .as_ref()
            .map(|a| format!(" with adapter {}", a.display()))
            .unwrap_or_default()
    );
    Ok((lm, tokenizer))
}

struct JobState {
    tx: UnboundedSender<Out>,
    submitted: Instant,
    /// Sequence ids still running or waiting.
    live: Vec<u64>,
    first_token_seen: bool,
}

struct SeqRef {
    job: u64,
    index: usize,
    last_token: Option<Instant>,
}

/// The engine loop: take new jobs, drop disconnected ones, step, route events.
fn run(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    max_running: usize,
    jobs_rx: &mpsc::Receiver<Job>,
    metrics: &Metrics,
) {
    let mut engine = Engine::new(lm, tokenizer, max_running);
    let mut jobs: HashMap<u64, JobState> = HashMap::new();
    let mut seqs: HashMap<u64, SeqRef> = HashMap::new();
    let mut next_job = 0u64;
    loop {
        let mut incoming = vec![];
        if engine.is_idle() {
            match jobs_rx.recv() {
                Ok(job) => incoming.push(job),
                Err(_) => return, // every sender gone and nothing running: shut down
            }
        }
        incoming.extend(jobs_rx.try_iter());
        for job in incoming {
            next_job += 1;
            let n = job.samples.len();
            match engine.add(job.prompt, job.samples) {
                Ok(ids) => {
                    for (index, &id) in ids.iter().enumerate() {
                        let seq = SeqRef {
                            job: next_job,
                            index,
                            last_token: None,
                        };
                        seqs.insert(id, seq);
                    }
                    jobs.insert(
                        next_job,
                        JobState {
                            tx: job.tx,
                            submitted: job.submitted,
                            live: ids,
                            first_token_seen: false,
                        },
                    );
                    metrics.requests.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) => {
                    let _ = job.tx.send(Out::Failed(e.to_string()));
                    metrics.release(n);
                }
            }
        }
        let gone: Vec<u64> = jobs
            .iter()
            .filter(|(_, j)| j.tx.is_closed())
            .map(|(&k, _)| k)
            .collect();
        for key in gone {
            cancel(key, &mut jobs, &mut seqs, &mut engine, metrics);
        }
        let events = match engine.step() {
            Ok(events) => events,
            Err(e) => {
                // A failed step fails every job; the next ones start on a fresh engine.
                tracing::error!("engine step failed: {e}");
                for (_, job) in jobs.drain() {
                    let _ = job.tx.send(Out::Failed(e.to_string()));
                    metrics.release(job.live.len());
                }
                seqs.clear();
                engine = Engine::new(lm, tokenizer, max_running);
                continue;
            }
        };
        for event in events {
            route(event, &mut jobs, &mut seqs, &mut engine, metrics);
        }
        metrics.running.store(engine.running(), Ordering::Release);
    }
}

fn route(
    event: Event,
    jobs: &mut HashMap<u64, JobState>,
    seqs: &mut HashMap<u64, SeqRef>,
    engine: &mut Engine,
    metrics: &Metrics,
) {
    let now = Instant::now();
    match event {
        Event::Token {
            id,
            token,
            logprob,
            top_logprobs,
            text,
        } => {
            let Some(seq) = seqs.get_mut(&id) else { return };
            let Some(job) = jobs.get_mut(&seq.job) else {
                return;
            };
            metrics.generated_tokens.fetch_add(1, Ordering::AcqRel);
            match seq.last_token {
                Some(last) => metrics
                    .inter_token_latency
                    .observe((now - last).as_secs_f64()),
                None if !job.first_token_seen => {
                    job.first_token_seen = true;
                    metrics
                        .time_to_first_token
                        .observe((now - job.submitted).as_secs_f64());
                }
                None => {}
            }
            seq.last_token = Some(now);
            let out = Out::Token {
                index: seq.index,
                token,
                logprob,
                top_logprobs,
                text,
            };
            if job.tx.send(out).is_err() {
                let key = seq.job;
                cancel(key, jobs, seqs, engine, metrics);
            }
        }
        Event::Finished {
            id,
            prompt_tokens,
            generated,
            text,
        } => {
            let Some(seq) = seqs.remove(&id) else { return };
            metrics.release(1);
            let Some(job) = jobs.get_mut(&seq.job) else {
                return;
            };
            job.live.retain(|&s| s != id);
            let _ = job.tx.send(Out::Finished {
                index: seq.index,
                finish: generated.finish,
                text,
                tokens: generated.tokens,
                prompt_tokens,
            });
            if job.live.is_empty() {
                jobs.remove(&seq.job);
            }
        }
    }
}

/// Stops a job whose client went away: its sequences leave at the next step.
fn cancel(
    key: u64,
    jobs: &mut HashMap<u64, JobState>,
    seqs: &mut HashMap<u64, SeqRef>,
    engine: &mut Engine,
    metrics: &Metrics,
) {
    if let Some(job) = jobs.remove(&key) {
        for id in &job.live {
            engine.cancel(*id);
            seqs.remove(id);
        }
        metrics.release(job.live.len());
        tracing::debug!("client went away: {} sequence(s) cancelled", job.live.len());
    }
}
