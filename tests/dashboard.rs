//! The dashboard at `/` in headless Chromium (Debian's `chromium`, installed by
//! `scripts/test.sh`), driven over the DevTools protocol against a running server with real
//! jobs: the page shows the jobs with their thumbnails, the failure with its reason on the
//! DLQ, and its Redrive button restarts the failed job. The screenshot goes to
//! `target/dashboard.png` (`IMGPIPE_UPDATE_SCREENSHOT=1` writes `docs/dashboard.png`, which the
//! README shows).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{MYPHOTO, TestServer, eventually, seed_request, test_options};
use futures_util::{SinkExt, StreamExt};
use protocol::job::JobState;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A headless Chromium and the DevTools connection to its one page.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Self {
        let profile = tempfile::TempDir::new().expect("profile");
        let mut child = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1280,1000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (apt-get install chromium, or scripts/build-deps.sh chromium)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let port = stderr
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split("ws://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).map(str::to_owned))
            .expect("chromium announces its DevTools port");
        let targets: Vec<Value> = eventually(Duration::from_secs(20), "the page target", || async {
            let list: Vec<Value> =
                reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await.ok()?.json().await.ok()?;
            list.iter().any(|t| t["type"] == "page").then_some(list)
        })
        .await;
        let page = targets.iter().find(|t| t["type"] == "page").expect("a page");
        let ws = page["webSocketDebuggerUrl"].as_str().expect("its DevTools socket");
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.expect("connect to the page");
        Self { child, _profile: profile, socket, next_id: 0 }
    }

    /// Sends one DevTools command and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket.send(Message::text(command)).await.expect("send");
        while let Some(message) = self.socket.next().await {
            let Ok(Message::Text(text)) = message else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("the DevTools socket closed during {method}");
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true })).await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn until(&mut self, expression: &str, what: &str) {
        for _ in 0..300 {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.eval("document.body.innerText").await;
        panic!("the page never showed {what}:\n{page}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_jobs_thumbnails_and_failures_and_its_redrive_button_restarts_a_job() {
    let s = TestServer::start(test_options()).await;
    for (key, bytes) in [("beach.jpg", MYPHOTO), ("notes.jpg", b"meeting notes, not a photo".as_slice())] {
        s.drop_file("original", key, bytes);
        let (_, body) = s.post_process("?wait=30", &seed_request(key)).await;
        s.wait_job(body["jobId"].as_str().expect("id"), Duration::from_secs(30)).await;
    }
    let failed = s.stack.orchestrator.list(10).await.expect("jobs").into_iter().find(|j| j.state == JobState::Fail);
    let failed = failed.expect("the text file failed").job_id;

    let mut browser = Browser::open(&s.url("/")).await;
    browser.until("document.body.dataset.ready === 'true'", "a first refresh").await;
    browser.until("document.getElementById('jobs').innerText.includes('original/beach.jpg')", "the good job").await;
    let jobs = browser.eval("document.getElementById('jobs').innerText").await;
    let jobs = jobs.as_str().expect("text");
    assert!(jobs.contains("Success") && jobs.contains("Fail") && jobs.contains("NotAnImage"), "{jobs}");
    browser
        .until(
            "[...document.querySelectorAll('#jobs img')].some(i => i.complete && i.naturalWidth === 512)",
            "the thumbnail",
        )
        .await;
    browser.until("document.getElementById('dlq').innerText.includes('NotAnImage')", "the dead letter").await;
    let cards = "[...document.querySelectorAll('#cards .card')].map(c => c.querySelector('b').innerText + '|' + c.querySelector('span').innerText)";
    browser.until(&format!("{cards}.includes('1|dead letters')"), "one dead letter counted").await;
    browser.until(&format!("{cards}.includes('1|succeeded (this server)')"), "one success counted").await;
    browser.until(&format!("{cards}.includes('0|worker slots busy')"), "idle workers").await;

    let shot = browser.call("Page.captureScreenshot", json!({ "format": "png" })).await;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64");
    assert_eq!(&png[1..4], b"PNG");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = if std::env::var_os("IMGPIPE_UPDATE_SCREENSHOT").is_some() {
        root.join("docs/dashboard.png")
    } else {
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
    };
    std::fs::write(&path, &png).expect("screenshot");

    // Fixed, then redriven from the page: the same job runs again and succeeds.
    s.drop_file("original", "notes.jpg", MYPHOTO);
    let button = format!("document.querySelector('button[data-redrive=\"{failed}\"]')");
    assert_eq!(browser.eval(&format!("{button} !== null")).await, Value::Bool(true));
    browser.eval(&format!("{button}.click()")).await;
    let job = eventually(Duration::from_secs(30), "the redriven job to succeed", || async {
        let job = s.job(&failed).await;
        (job.state == JobState::Success).then_some(job)
    })
    .await;
    assert!(job.history.iter().any(|h| h.note.as_deref().is_some_and(|n| n.contains("redriven"))), "{job:?}");
    browser.until("!document.getElementById('dlq').innerText.includes('NotAnImage')", "the DLQ emptied").await;
    drop(browser);
    s.stop().await;
}
