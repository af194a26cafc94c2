//! Headless Chromium driven through chromedriver with `fantoccini` (plain HTTP to the
//! local driver, no TLS): the few steps the browser tests take, each waiting for its
//! element so a busy test machine does not fail them, and panicking with the driver's
//! message otherwise.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a step waits for its element or condition.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    client: Client,
    /// `http://127.0.0.1:PORT/session/ID`, for the one raw command (and the delete in Drop).
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
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while !http
            .get(format!("{base}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads dir");
        let capabilities = json!({
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
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&base)
            .await
            .expect("new WebDriver session");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let session_url = format!("{base}/session/{session}");
        // Allow downloads in headless mode explicitly: a Chrome DevTools command, which
        // fantoccini has no call for, sent to chromedriver's own endpoint.
        let reply: Value = http
            .post(format!("{session_url}/goog/cdp/execute"))
            .json(&json!({"cmd": "Browser.setDownloadBehavior",
                          "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}))
            .send()
            .await
            .expect("setDownloadBehavior")
            .json()
            .await
            .expect("setDownloadBehavior reply");
        assert!(reply["value"]["error"].is_null(), "{reply}");
        Browser {
            client,
            session_url,
            driver,
            _profile: profile,
            downloads,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Opens one of the app's pages and waits until its script has set
    /// `document.body.dataset.ready` (`what` names the page in a timeout).
    pub async fn open(&self, url: &str, what: &str) {
        self.goto(url).await;
        self.wait_until("return document.body.dataset.ready === 'true'", what)
            .await;
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element matches {css:?}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// Picks `path` in the file input `css` (WebDriver types the path into it).
    pub async fn choose_file(&self, css: &str, path: &Path) {
        let element = self.find(css).await;
        element
            .send_keys(&path.display().to_string())
            .await
            .unwrap_or_else(|e| panic!("choose {} in {css:?}: {e}", path.display()));
    }

    /// Visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// Presses keys one after another on the focused page ("\u{E007}" is Enter).
    pub async fn press(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
        self.client.release_actions().await.expect("release keys");
    }

    /// Runs `script` (a JS function body with `return`) and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `script` returns true.
    pub async fn wait_until(&self, script: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
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

    /// On an arena campaign's annotator page: accepts the consent statement, waits for
    /// the prompt box and types `prompt` into it (not sent yet).
    pub async fn consent_and_compose(&self, prompt: &str) {
        self.click("#accept-consent").await;
        self.wait_until(
            "return !document.getElementById('compose').hidden",
            "the prompt box",
        )
        .await;
        self.type_into("#arena-prompt", prompt).await;
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    /// Saves a PNG screenshot; returns its bytes.
    pub async fn screenshot(&self, path: &Path) -> Vec<u8> {
        let bytes = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, &bytes).expect("write screenshot");
        bytes
    }
}

impl Drop for Browser {
    /// Deletes the session (which closes Chromium) with a blocking request — Drop cannot
    /// await fantoccini's `close` — then stops chromedriver, so no browser outlives a
    /// failed test.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some((host, path)) = self
            .session_url
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
        {
            if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request =
                    format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(request.as_bytes());
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
