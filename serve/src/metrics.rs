//! Server metrics in Prometheus' text format: queue depth, running sequences, tokens
//! generated, requests, and histograms of time to first token and per-token latency.
//! Counters are atomics; a histogram is a small mutex-guarded bucket array (observed once
//! per token by the engine thread, read once per scrape).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bucket upper bounds in seconds (Prometheus' defaults, plus finer ones below 5 ms).
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default)]
struct HistogramState {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Histogram(Mutex<HistogramState>);

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let Ok(mut h) = self.0.lock() else { return };
        for (i, &bound) in BUCKETS.iter().enumerate() {
            if seconds <= bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, model: &str) {
        let Ok(h) = self.0.lock() else { return };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
    }
}

/// One model's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sequences accepted and not yet finished (running + waiting); bounds the queue.
    pub pending: AtomicUsize,
    pub running: AtomicUsize,
    pub generated_tokens: AtomicU64,
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
}

impl Metrics {
    /// Reserves room for `n` sequences if fewer than `limit` would then be pending.
    pub fn try_reserve(&self, n: usize, limit: usize) -> bool {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p + n <= limit).then_some(p + n)
            })
            .is_ok()
    }

    pub fn release(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    pub fn queue_depth(&self) -> usize {
        self.pending
            .load(Ordering::Acquire)
            .saturating_sub(self.running.load(Ordering::Acquire))
    }
}

/// A gauge or counter family: name, Prometheus type, help, how to read it.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Metrics) -> u64,
);
/// A histogram family: name, help, which histogram.
type HistogramFamily = (&'static str, &'static str, fn(&Metrics) -> &Histogram);

/// Every model's metrics as one Prometheus text page.
pub fn render<'a>(models: impl Iterator<Item = (&'a str, &'a Metrics)>) -> String {
    let mut out = String::new();
    let models: Vec<_> = models.collect();
    let gauges: [Family; 5] = [
        (
            "tiller_queue_depth",
            "gauge",
            "Sequences waiting to join the running batch.",
            |m| m.queue_depth() as u64,
        ),
        (
            "tiller_running_sequences",
            "gauge",
            "Sequences in the running batch.",
            |m| m.running.load(Ordering::Acquire) as u64,
        ),
        (
            "tiller_generated_tokens_total",
            "counter",
            "Tokens generated.",
            |m| m.generated_tokens.load(Ordering::Acquire),
        ),
        (
            "tiller_requests_total",
            "counter",
            "Completion requests accepted.",
            |m| m.requests.load(Ordering::Acquire),
        ),
        (
            "tiller_rejected_requests_total",
            "counter",
            "Requests answered 429 (queue full).",
            |m| m.rejected.load(Ordering::Acquire),
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (model, m) in &models {
            let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", value(m));
        }
    }
    let histograms: [HistogramFamily; 2] = [
        (
            "tiller_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first token.",
            |m| &m.time_to_first_token,
        ),
        (
            "tiller_inter_token_latency_seconds",
            "Seconds between consecutive tokens of a sequence.",
            |m| &m.inter_token_latency,
        ),
    ];
    for (name, help, histogram) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (model, m) in &models {
            histogram(m).write(&mut out, name, model);
        }
    }
    out
}
