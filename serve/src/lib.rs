//! tiller-serve: OpenAI's HTTP API (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/models`, SSE streaming) plus `/health` and Prometheus `/metrics`, over the decode
//! engine of `tiller-model`. Its own crate so the HTTP stack (axum, tokio) stays out of
//! `model`, and `app(state)` is testable without binding a socket.
//!
//! Invariants:
//! - One engine thread per model owns the model and steps its running batch
//!   (`worker`); handlers never touch tensors.
//! - Requests join the running batch between steps (continuous batching). At most
//!   `max_batch + max_queue` sequences are accepted per model; beyond that a request gets
//!   429 with `Retry-After`.
//! - A client that goes away frees its sequences at the next step.
//! - Bad input is a 400/404 in OpenAI's error shape with `param` naming the field.
//! - SIGTERM/ctrl-c: stop accepting, let running requests finish, then exit.
//! - An adapter is served only over the base it records, or a copy of it (`adapter`).

pub mod adapter;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod params;
pub mod routes;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use tiller_data::Tokenizer;
use tiller_model::DType;

pub use error::{ApiError, ServeError};
use metrics::Metrics;
use worker::{Job, LoadSpec, ModelInfo};

/// One model to serve under `name`, optionally a LoRA adapter over the weights in `dir`.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub dir: PathBuf,
    pub adapter: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: Vec<ModelSpec>,
    pub device: tch::Device,
    pub dtype: DType,
    /// Address to listen on, e.g. `127.0.0.1:8000` (port 0: any free port).
    pub bind: String,
    /// When set, every `/v1` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Sequences in one model's running batch.
    pub max_batch: usize,
    /// Sequences that may wait to join it.
    pub max_queue: usize,
}

/// A loaded model as handlers see it.
pub struct ModelHandle {
    pub name: String,
    pub tokenizer: Tokenizer,
    pub info: ModelInfo,
    pub metrics: Arc<Metrics>,
    pub created: u64,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl ModelHandle {
    /// Hands a job to the engine thread; false once the server is shutting down.
    fn submit(&self, job: Job) -> bool {
        match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok()),
            Err(_) => false,
        }
    }

    /// Drops the job sender: the engine thread exits once its batch is empty.
    fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}

pub struct AppState {
    pub models: Vec<Arc<ModelHandle>>,
    pub api_key: Option<String>,
    /// Sequences accepted per model (running + waiting) before answering 429.
    pub limit: usize,
    ids: AtomicU64,
}

impl AppState {
    fn model(&self, name: &str) -> Option<&Arc<ModelHandle>> {
        self.models.iter().find(|m| m.name == name)
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::AcqRel)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if g == key => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// The routes, separate from binding a socket.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/models", get(routes::models))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::fallback)
        .with_state(state)
}

/// Loaded models with their engine threads.
pub struct Loaded {
    pub state: Arc<AppState>,
    threads: Vec<JoinHandle<()>>,
}

/// Loads every model (each on its own engine thread).
pub fn load(config: &ServeConfig) -> Result<Loaded, ServeError> {
    let mut models = vec![];
    let mut threads = vec![];
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for spec in &config.models {
        if models
            .iter()
            .any(|m: &Arc<ModelHandle>| m.name == spec.name)
        {
            return Err(ServeError::ModelSpec {
                spec: spec.name.clone(),
                message: "two models have this name".into(),
            });
        }
        let metrics = Arc::new(Metrics::default());
        let load = LoadSpec {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            adapter: spec.adapter.clone(),
            device: config.device,
            dtype: config.dtype,
            max_running: config.max_batch,
        };
        let (jobs, thread, info) = worker::spawn(load, metrics.clone())?;
        let tokenizer = Tokenizer::from_dir(&spec.dir).map_err(|source| ServeError::Tokenizer {
            dir: spec.dir.clone(),
            source,
        })?;
        threads.push(thread);
        models.push(Arc::new(ModelHandle {
            name: spec.name.clone(),
            tokenizer,
            info,
            metrics,
            created,
            jobs: Mutex::new(Some(jobs)),
        }));
    }
    let state = Arc::new(AppState {
        models,
        api_key: config.api_key.clone(),
        limit: config.max_batch + config.max_queue,
        ids: AtomicU64::new(0),
    });
    Ok(Loaded { state, threads })
}

impl Loaded {
    /// Stops the engines once their running requests are done, and waits for them.
    pub fn shutdown(self) {
        for m in &self.state.models {
            m.close();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Serves until SIGTERM or ctrl-c, then drains: no new connections, running requests run
/// to the end, engines stop. `on_bound` gets the bound address (port 0 picks one).
pub async fn serve(
    config: ServeConfig,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
    let loaded = load(&config)?;
    on_bound(listener.local_addr()?);
    axum::serve(listener, app(loaded.state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("draining: waiting for the engines to finish");
    tokio::task::spawn_blocking(move || loaded.shutdown())
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal: no new connections; finishing running requests");
}
