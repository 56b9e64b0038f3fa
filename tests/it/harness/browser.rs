//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver, started per test) with fantoccini.
//! Tests take turns (one browser at a time on 2 cores), find things by
//! what a person sees (headings, labels, button text), wait on page state
//! with a deadline, and leave a screenshot in target/console-failures when
//! they fail. `SYNCWAY_CHROMEDRIVER`, `SYNCWAY_CHROMIUM` and `SYNCWAY_AXE`
//! (axe-core's script) are set by scripts/test.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{Value, json};
use std::process::{Child, Command};
use tokio::sync::{Mutex, MutexGuard};

use super::eventually;

/// Page state is waited for this long (the first Chromium start on 2
/// cores takes a while; a page itself answers in milliseconds).
pub const PAGE_DEADLINE: Duration = Duration::from_secs(30);

static TURN: Mutex<()> = Mutex::const_new(());

fn setting(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test, which installs Chromium, chromedriver and axe-core"))
}

/// Where the suite's screenshots go (README's come from here).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// chromedriver, stopped with the browser (or a failed start).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser's profile directory, removed with it.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "syncway-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("a browser profile directory");
        Profile(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: Profile,
    _turn: MutexGuard<'static, ()>,
    base: String,
}

impl Browser {
    /// A fresh browser (its own profile: no cookies) at `base` (the API's
    /// URL), 1280×800.
    pub async fn start(base: &str) -> Browser {
        let turn = TURN.lock().await;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let driver = Driver(
            Command::new(setting("SYNCWAY_CHROMEDRIVER"))
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting chromedriver"),
        );
        let status_url = format!("http://127.0.0.1:{port}/status");
        eventually("chromedriver to answer", PAGE_DEADLINE, || async {
            reqwest::get(&status_url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        let profile = Profile::new();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": setting("SYNCWAY_CHROMIUM"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
            _turn: turn,
            base: base.to_owned(),
        }
    }

    /// Runs `scenario`; on a panic, saves a screenshot named `name` first.
    pub async fn run(self, name: &str, scenario: impl AsyncFnOnce(&Browser)) {
        let outcome = AssertUnwindSafe(scenario(&self)).catch_unwind().await;
        if outcome.is_err() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-failures");
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(png) = self.client.screenshot().await {
                let path = dir.join(format!("{name}.png"));
                let _ = std::fs::write(&path, png);
                eprintln!("screenshot of the failure: {}", path.display());
            }
            if let Ok(source) = self.client.source().await {
                let _ = std::fs::write(dir.join(format!("{name}.html")), source);
            }
        }
        let Browser { client, .. } = self;
        let _ = client.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Opens a console path.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|error| panic!("opening {path}: {error}"));
    }

    /// The page's path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits for the page's main heading to read `title`.
    pub async fn heading(&self, title: &str) {
        eventually(&format!("the heading {title:?}"), PAGE_DEADLINE, || async {
            let heading = self.client.find(Locator::Css("h1")).await.ok()?;
            let text = heading.text().await.ok()?;
            (text.trim() == title).then_some(())
        })
        .await
    }

    /// The text of the first element at `xpath`, once there.
    pub async fn text_at(&self, xpath: &str) -> String {
        eventually(&format!("an element at {xpath}"), PAGE_DEADLINE, || async {
            let element = self.client.find(Locator::XPath(xpath)).await.ok()?;
            element.text().await.ok().map(|t| t.trim().to_owned())
        })
        .await
    }

    /// Waits until the text at `xpath` satisfies `check`; that text.
    pub async fn wait_text(&self, what: &str, xpath: &str, check: impl Fn(&str) -> bool) -> String {
        eventually(what, PAGE_DEADLINE, || async {
            let element = self.client.find(Locator::XPath(xpath)).await.ok()?;
            let text = element.text().await.ok()?;
            check(text.trim()).then(|| text.trim().to_owned())
        })
        .await
    }

    /// The figure of an overview card (`dt` label → its `dd`).
    pub async fn figure(&self, label: &str) -> String {
        self.text_at(&format!(
            "//dt[normalize-space()='{label}']/following-sibling::dd[1]"
        ))
        .await
    }

    /// Clicks the button (or link) that reads `label`.
    pub async fn click(&self, label: &str) {
        let xpath = format!(
            "(//button[normalize-space()='{label}'] | //a[normalize-space()='{label}'])[1]"
        );
        let element = eventually(&format!("the button {label:?}"), PAGE_DEADLINE, || async {
            self.client.find(Locator::XPath(&xpath)).await.ok()
        })
        .await;
        element
            .click()
            .await
            .unwrap_or_else(|error| panic!("clicking {label:?}: {error}"));
    }

    /// Types into the input labelled `label`.
    pub async fn fill(&self, label: &str, value: &str) {
        let xpath = format!(
            "//label[contains(normalize-space(), '{label}')]//*[self::input or self::select]"
        );
        let input = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|error| panic!("the field {label:?}: {error}"));
        input.clear().await.ok();
        input.send_keys(value).await.expect("typing");
    }

    /// Whether the page's text contains `text` now (false while a page is
    /// loading).
    pub async fn shows(&self, text: &str) -> bool {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.is_ok_and(|t| t.contains(text)),
            Err(_) => false,
        }
    }

    /// Waits until the page's text contains `text`.
    pub async fn wait_shows(&self, text: &str) {
        eventually(
            &format!("the page to show {text:?}"),
            PAGE_DEADLINE,
            || async { self.shows(text).await.then_some(()) },
        )
        .await;
    }

    /// Saves a screenshot under `name` in target/console-screenshots.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("saving the screenshot");
    }

    /// axe-core's serious and critical violations on the page.
    pub async fn accessibility_violations(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(setting("SYNCWAY_AXE")).expect("reading axe-core");
        self.client
            .execute(&format!("{axe}\nreturn true;"), vec![])
            .await
            .expect("loading axe-core into the page");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                    .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target)}))))
                    .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));",
                vec![],
            )
            .await
            .expect("running axe-core");
        found
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect()
    }

    /// Asserts the page has no serious or critical accessibility violation.
    pub async fn assert_accessible(&self, page: &str) {
        let violations = self.accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "accessibility violations on {page}: {violations:#?}"
        );
    }
}
