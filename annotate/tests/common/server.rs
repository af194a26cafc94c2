//! Runs the `tiller-annotate-server` binary as a child process on a free loopback port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts the server on `db` and waits until `/healthz` answers.
    pub async fn start(db: &Path) -> Server {
        Server::start_with(db, &[]).await
    }

    /// Like [`Server::start`], with extra command-line flags.
    pub async fn start_with(db: &Path, extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tiller-annotate-server"))
            .arg("--db")
            .arg(db)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tiller-annotate-server");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(reply) = client.get(format!("{}/healthz", server.base)).send().await {
                if reply.status().is_success() {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become healthy in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as `systemctl stop` sends it.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit; how long it took, or `None`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((start.elapsed(), status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no shutdown hooks, no flush, no checkpoint.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill server");
        self.child.wait().expect("reap server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
