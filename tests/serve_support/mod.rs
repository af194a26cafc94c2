//! `tiller serve` as a child process for the tests that talk to it (serve_openai.rs,
//! arena.rs): started on a free loopback port with an API key, its URL read from the
//! first line it prints, killed when dropped.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The `--api-key` every test server is started with.
pub const KEY: &str = "test-key";

/// A running `tiller serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tiller serve --model MODEL` (`NAME=DIR` or `DIR`) with `extra` flags.
pub fn serve(model: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args([
            "serve",
            "--model",
            model,
            "--bind",
            "127.0.0.1:0",
            "--api-key",
            KEY,
        ])
        .args(extra)
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tiller serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server { child, url }
}
