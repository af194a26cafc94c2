//! Load benchmark: many annotators voting at once against a real server on loopback.
//!
//! A closed-loop ("bounded") client: each of `--clients` annotators repeatedly asks for
//! its next item and votes on it, one request at a time over keep-alive HTTP/1.1. Only
//! votes answered `201 Created` count — and the server answers only after the vote's
//! transaction is fsynced (`synchronous = FULL`), so every counted vote is durable.
//!
//! `--db postgres://USER@HOST[:PORT]/DB` measures the PostgreSQL backend (COMMIT with
//! `synchronous_commit = on`). `--servers 2` starts two servers on the database, each
//! with its own store (writer connection, read connections, HTTP listener), as two
//! `tiller annotate serve` processes would have; client `i` talks to server `i % N`.
//!
//!   cargo run --release -p tiller-annotate --example loadbench -- \
//!       [--clients 64] [--seconds 10] [--warmup 2] [--overlap 1] [--db FILE|URL] [--servers 1] [--items N]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiller_annotate::serve::serve_on;
use tiller_annotate::store::parse_items_jsonl;
use tiller_annotate::{AppState, NewCampaign, Store};

struct Args {
    clients: usize,
    seconds: f64,
    warmup: f64,
    overlap: u32,
    db: Option<std::path::PathBuf>,
    servers: usize,
    /// Items to queue; by default enough for 12,000 votes/s over the whole run.
    items: Option<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: 64,
        seconds: 10.0,
        warmup: 2.0,
        overlap: 1,
        db: None,
        servers: 1,
        items: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => args.clients = number(&flag, &value),
            "--seconds" => args.seconds = number(&flag, &value),
            "--warmup" => args.warmup = number(&flag, &value),
            "--overlap" => args.overlap = number(&flag, &value),
            "--db" => args.db = Some(value.into()),
            "--servers" => args.servers = number(&flag, &value),
            "--items" => args.items = Some(number(&flag, &value)),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad value for {flag}: {value}"))
}

/// Per-client results: latencies (µs) of acknowledged votes and of `next` calls made
/// inside the measured window.
#[derive(Default)]
struct Sample {
    vote_us: Vec<u64>,
    next_us: Vec<u64>,
    errors: usize,
}

async fn client_loop(
    http: reqwest::Client,
    base: String,
    token: String,
    measure: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Sample {
    let auth = format!("Bearer {token}");
    let mut sample = Sample::default();
    let consent = http
        .post(format!("{base}/api/me/consent"))
        .header("Authorization", &auth)
        .json(&json!({"accept": true}));
    consent.send().await.expect("consent");
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let reply = http
            .post(format!("{base}/api/me/next"))
            .header("Authorization", &auth)
            .send()
            .await
            .expect("next");
        let next: Value = reply.json().await.expect("next json");
        let next_us = started.elapsed().as_micros() as u64;
        let Some(assignment) = next["assignment"].as_object() else {
            break;
        };
        let vote = json!({"assignment_id": assignment["assignment_id"], "choice": "A", "strength": "clear"});
        let started = Instant::now();
        let reply = http
            .post(format!("{base}/api/me/votes"))
            .header("Authorization", &auth)
            .json(&vote)
            .send()
            .await
            .expect("vote");
        let status = reply.status();
        let _ = reply.bytes().await;
        let vote_us = started.elapsed().as_micros() as u64;
        if measure.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            sample.next_us.push(next_us);
            if status == reqwest::StatusCode::CREATED {
                sample.vote_us.push(vote_us);
            } else {
                sample.errors += 1;
            }
        }
    }
    sample
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| dir.path().join("bench.db"));
    let store = Store::open(&db).expect("store");
    let names: Vec<String> = (0..args.clients).map(|i| format!("bench{i}")).collect();
    let campaign = NewCampaign {
        name: format!("bench-{}", std::process::id()),
        guidelines: String::new(),
        consent: None,
        overlap: args.overlap,
        annotators: names,
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(campaign).expect("campaign");
    // Enough items that nobody runs dry: 12,000 votes/s for the whole run.
    let items = args
        .items
        .unwrap_or(((args.seconds + args.warmup) * 12000.0 / args.overlap as f64) as usize + 1000);
    let jsonl: String = (0..items)
        .map(|i| json!({"prompt": format!("Prompt number {i}: explain something."), "answers": [{"model": "a", "text": "A fairly short answer. ".repeat(8)}, {"model": "b", "text": "Another answer, a bit different. ".repeat(8)}]}).to_string() + "\n")
        .collect();
    store
        .add_items(campaign.id, parse_items_jsonl(&jsonl).expect("items"))
        .expect("add items");

    // The server gets its own runtime, as in `tiller annotate serve`.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut bases = Vec::new();
    for index in 0..args.servers.max(1) {
        let listener = server_runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        bases.push(format!("http://{}", listener.local_addr().expect("addr")));
        let store = if index == 0 {
            store.clone()
        } else {
            Store::open(&db).expect("another store on the same database")
        };
        let state = AppState::new(store);
        server_runtime
            .spawn(async move { serve_on(listener, state, std::future::pending()).await });
    }

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (samples, measured) = client_runtime.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.clients)
            .build()
            .expect("client");
        let measure = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                tokio::spawn(client_loop(
                    http.clone(),
                    bases[i % bases.len()].clone(),
                    l.token.clone(),
                    measure.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        measure.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let measured = started.elapsed().as_secs_f64();
        let mut samples = Vec::new();
        for task in tasks {
            samples.push(task.await.expect("client"));
        }
        (samples, measured)
    });
    let mut votes: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.vote_us.iter().copied())
        .collect();
    let mut nexts: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.next_us.iter().copied())
        .collect();
    let errors: usize = samples.iter().map(|s| s.errors).sum();
    votes.sort_unstable();
    nexts.sort_unstable();
    println!(
        "clients {} | overlap {} | servers {} | measured {:.1} s after {:.1} s warm-up | {} items",
        args.clients,
        args.overlap,
        bases.len(),
        measured,
        args.warmup,
        items
    );
    println!(
        "acknowledged durable votes: {} ({:.0} votes/s), non-201 votes: {errors}",
        votes.len(),
        votes.len() as f64 / measured
    );
    println!(
        "vote latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&votes, 0.5),
        percentile(&votes, 0.9),
        percentile(&votes, 0.99),
        percentile(&votes, 1.0)
    );
    println!(
        "next latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&nexts, 0.5),
        percentile(&nexts, 0.9),
        percentile(&nexts, 0.99),
        percentile(&nexts, 1.0)
    );
    println!(
        "total requests/s (next + vote): {:.0}",
        (votes.len() + nexts.len()) as f64 / measured
    );
}
