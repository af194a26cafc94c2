//! What the `tiller eval` tests (eval_cli.rs, eval_compare.rs) share: running the binary,
//! the eval crate's fixtures, tiny random checkpoints, and opening a report page in
//! headless Chromium.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn tiller(args: &[&str]) -> Output {
    tiller_logging(args, "warn")
}

/// Runs tiller with its log filter (`TILLER_LOG`) at `level`; its log is stderr.
pub fn tiller_logging(args: &[&str], level: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .env("TILLER_LOG", level)
        .output()
        .expect("cannot run tiller")
}

pub fn ok(args: &[&str]) -> String {
    let out = tiller(args);
    assert!(
        out.status.success(),
        "tiller {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("eval/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn tiny_model(dir: &Path, seed: i64) -> String {
    tiller_model::testing::write_tiny_checkpoint(dir, seed).unwrap();
    dir.display().to_string()
}

/// Opens the page in headless Chromium, takes a screenshot and fails on console errors.
pub fn check_in_chromium(page: &Path, screenshot: &Path) {
    let chromium = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("headless Chromium is required for this test: apt-get install -y chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1100,2400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("cannot run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    // The page has no scripts, so any console message (an error, a CSP report) is a defect.
    // Chromium logs them as `INFO:CONSOLE:<line>] "message"` whatever their level.
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    assert!(!stderr.contains("Refused to"), "CSP violations:\n{stderr}");
    let png = std::fs::read(screenshot).expect("no screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot looks empty"
    );
    if let Ok(dir) = std::env::var("TILLER_SCREENSHOT_DIR") {
        let _ = std::fs::copy(screenshot, Path::new(&dir).join("eval_report.png"));
    }
}
