//! A minimal W3C WebDriver client over HTTP, enough to drive headless Chromium through
//! chromedriver: navigate, find, click, type, press keys, run a script, screenshot.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The key W3C uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session_url: String,
    driver: Child,
    _profile: tempfile::TempDir,
    pub downloads: PathBuf,
}

fn chromedriver() -> PathBuf {
    for candidate in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "the browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, \
         /usr/bin/chromedriver): run `scripts/setup.sh --browser` or `apt-get install chromium chromium-driver`"
    );
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session.
    pub async fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "the browser tests need {CHROMIUM}: run `scripts/setup.sh --browser` or `apt-get install chromium chromium-driver`"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(reply) = http.get(format!("{base}/status")).send().await {
                if reply.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "profile.default_content_setting_values.automatic_downloads": 1,
                },
            },
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"));
        let browser = Browser {
            http,
            session_url: format!("{base}/session/{session}"),
            driver,
            _profile: profile,
            downloads,
        };
        // Allow downloads in headless mode explicitly (Chrome DevTools command).
        let download_dir = browser.downloads.display().to_string();
        browser
            .command(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Browser.setDownloadBehavior", "params": {"behavior": "allow", "downloadPath": download_dir}}),
            )
            .await;
        browser
    }

    /// Sends one command; panics with the driver's message on error.
    pub async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{}", self.session_url, path);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let reply: Value = request
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!(
                "webdriver {method} {path}: {error}: {}",
                reply["value"]["message"]
            );
        }
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url})).await;
    }

    /// Finds an element by CSS selector, waiting up to 30 s for it to appear (the test
    /// machine may be busy).
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/element", self.session_url);
            let reply: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("find")
                .json()
                .await
                .expect("json");
            if let Some(id) = reply["value"][ELEMENT_KEY].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element matches {css:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.command("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.command("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Presses keys one after another on the focused page (WebDriver key actions).
    /// Use "\u{E007}" for Enter.
    pub async fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": key.to_string()}));
            actions.push(json!({"type": "keyUp", "value": key.to_string()}));
        }
        self.command(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.command("DELETE", "/actions", Value::Null).await;
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits up to 30 s until `script` (a JS function body with `return`) is true.
    pub async fn wait_until(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.execute(script).await;
            if value.as_bool() == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last value {value})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG screenshot; returns its bytes.
    pub async fn screenshot(&self, path: &Path) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", Value::Null).await;
        let bytes = decode_base64(encoded.as_str().expect("base64 screenshot"));
        std::fs::write(path, &bytes).expect("write screenshot");
        bytes
    }
}

impl Drop for Browser {
    /// Deletes the session (which closes Chromium) with a blocking request — Drop cannot
    /// await — then stops chromedriver, so no browser outlives a failed test.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some(rest) = self.session_url.strip_prefix("http://") {
            if let Some((host, path)) = rest.split_once('/') {
                if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let request = format!(
                        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(request.as_bytes());
                    let _ = stream.read_to_end(&mut Vec::new());
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let pads = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk.iter().fold(0u32, |acc, &c| (acc << 6) | value(c)) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pads.min(2)]);
    }
    out
}
