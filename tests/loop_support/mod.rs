//! What the loop tests share: the loop's pipeline file on a tiny model, `tiller annotate
//! serve` as a child process, and annotators that vote through its HTTP API (plain
//! HTTP/1.1 over a socket, as a browser's page would send it).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pipeline_support::write_lines;

/// `tiller annotate serve` on a free loopback port, killed when dropped.
pub struct Serve {
    child: Child,
    pub addr: String,
}

impl Serve {
    pub fn start(db: &Path) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_tiller"))
            .args(["annotate", "serve", "--db"])
            .arg(db)
            .args(["--bind", &addr])
            .env("TILLER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tiller annotate serve");
        let serve = Serve { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while serve.request("GET", "/healthz", None, Value::Null).0 != 200 {
            assert!(Instant::now() < deadline, "server not healthy in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }

    /// One HTTP/1.1 request (`Connection: close`): status and JSON body (Null if none).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let Ok(mut stream) = TcpStream::connect(&self.addr) else {
            return (0, Value::Null);
        };
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all((head + &body).as_bytes()).expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read reply");
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = reply
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An annotator agrees to the consent statement and votes on every item offered;
/// returns the vote ids the server acknowledged.
pub fn vote_all(serve: &Serve, token: &str, strength: &str) -> Vec<i64> {
    let (status, _) = serve.request(
        "POST",
        "/api/me/consent",
        Some(token),
        json!({"accept": true}),
    );
    assert_eq!(status, 200, "consent");
    let mut ids = Vec::new();
    loop {
        let (status, next) = serve.request("POST", "/api/me/next", Some(token), json!({}));
        assert_eq!(status, 200, "next: {next}");
        let Some(assignment) = next["assignment"]["assignment_id"].as_i64() else {
            return ids;
        };
        let vote = json!({"assignment_id": assignment, "choice": "A", "strength": strength});
        let (status, receipt) = serve.request("POST", "/api/me/votes", Some(token), vote);
        assert_eq!(status, 201, "vote: {receipt}");
        ids.push(receipt["vote_id"].as_i64().expect("vote id"));
    }
}

/// Round 1 (SFT, DPO), the queue of round 1's answers against the base model's, the
/// export that waits for 6 votes, DPO round 2, two reward models on the votes (with and
/// without strength margins) and base / round 1 / round 2 evaluations on one scorecard.
/// Returns the pipeline file's path.
pub fn loop_pipeline(dir: &Path, model: &Path, sft: &Path, prefs: &Path, seed: u64) -> String {
    let prompts = dir.join("prompts.jsonl");
    write_lines(
        &prompts,
        &(0..3)
            .map(|i| json!({"prompt": format!("Tell me about {i}.")}))
            .collect::<Vec<_>>(),
    );
    let text = format!(
        r#"out = "{run}"

[[stages]]
name = "sft"
kind = "sft"
model = "{model}"
[stages.data]
train = "{sft}"
max_seq_len = 48
[stages.train]
batch_size = 4
max_steps = 2

[[stages]]
name = "round1"
kind = "dpo"
model = "stages.sft"
[stages.data]
train = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 2
max_steps = 2

[[stages]]
name = "queue"
kind = "annotate-queue"
database = "{db}"
campaign = "round-1"
prompts = "{prompts}"
models = ["stages.round1", "{model}"]
guidelines = "Pick the more helpful answer."
overlap = 2
annotators = ["ana", "ben"]
[stages.sampling]
max_new_tokens = 4
batch_size = 2
seed = {seed}

[[stages]]
name = "votes"
kind = "annotate-export"
database = "{db}"
campaign = "round-1"
aggregation = "every_vote"
min_votes = 6

[[stages]]
name = "round2"
kind = "dpo"
model = "stages.round1"
[stages.data]
train = "stages.votes"
max_seq_len = 64
[stages.train]
batch_size = 2
max_steps = 2

# The same reward model twice on the votes, once with strength as a margin.
[[stages]]
name = "rm"
kind = "reward"
model = "{model}"
[stages.data]
train = "stages.votes"
max_seq_len = 64
[stages.train]
batch_size = 6
max_steps = 1
log_every = 1

[[stages]]
name = "rm-margin"
kind = "reward"
model = "{model}"
[stages.data]
train = "stages.votes"
max_seq_len = 64
[stages.train]
batch_size = 6
max_steps = 1
log_every = 1
[stages.loss]
strength_margin = {{ slight = 0.0, clear = 1.0, strong = 2.0 }}

# Base, round 1 and round 2 on the same probes, one scorecard.
[[stages]]
name = "eval-base"
kind = "eval"
model = "{model}"
limit = 2
max_new_tokens = 4

[[stages]]
name = "eval-round1"
kind = "eval"
model = "stages.round1"
limit = 2
max_new_tokens = 4

[[stages]]
name = "eval"
kind = "eval"
model = "stages.round2"
baseline = "stages.round1"
compare = ["stages.eval-base", "stages.eval-round1"]
limit = 2
max_new_tokens = 4
"#,
        run = dir.join("run").display(),
        db = dir.join("votes.db").display(),
        model = model.display(),
        sft = sft.display(),
        prefs = prefs.display(),
        prompts = prompts.display(),
    );
    let path = dir.join("loop.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path.display().to_string()
}
