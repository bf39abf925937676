//! The `herald` binary against real clients: its HTTP publish API over a plain TCP
//! HTTP/1.1 client, and WebSocket clients receiving what the API published.
mod common;
use common::{next_json, send, WAIT};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "test-api-key-0123456789";

/// A running `herald` binary, stopped with SIGTERM when dropped.
struct Herald {
    child: Child,
    port: u16,
}

/// Writes `toml` to a file of its own and starts the binary on it (stdout piped); the
/// caller removes the file once the child has read it.
fn spawn_herald(toml: &str, args: &[&str], stderr: Stdio) -> (Child, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file =
        std::env::temp_dir().join(format!("herald-standalone-{}-{n}.toml", std::process::id()));
    std::fs::write(&file, toml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(&file)
        .args(args)
        .env_remove("HERALD_API_KEY")
        .env("HERALD_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (child, file)
}

impl Herald {
    fn start(toml: &str) -> Herald {
        Herald::start_with(toml, &[])
    }

    fn start_with(toml: &str, args: &[&str]) -> Herald {
        let (mut child, file) = spawn_herald(toml, args, Stdio::null());
        let port = common::herald_listening_port(child.stdout.take().unwrap())
            .expect("herald printed no listening address");
        // It has read its config by the time it listens.
        let _ = std::fs::remove_file(file);
        Herald { child, port }
    }

    fn post(&self, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
        let (status, _, body) = http(self.port, "POST", path, key, body);
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    /// SIGTERM, then the exit status within the wait bound.
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signals a child process this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "herald did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request on a fresh connection: status, headers, body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn config(extra: &str) -> String {
    format!("port = 0\napi_key = \"{KEY}\"\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_api_reaches_websocket_clients() {
    let herald = Herald::start(&config("[history]\nsize = 16\n"));
    let url = format!("ws://127.0.0.1:{}/ws?sessionId=job", herald.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    send(&mut ws, r#"{"type":"subscribe","channel":"news"}"#).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let (status, body) = herald.post(
        "/api/notify/progress",
        Some(KEY),
        r#"{"sessionId":"job","percent":50,"op":"kept"}"#,
    );
    assert_eq!((status, &body), (202, &json!({"ok": true})));
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "ai_progress");
    assert_eq!(m["sessionId"], "job");
    // Outside a batch, "op" is the payload's own key.
    assert_eq!(m["progress"], json!({"percent": 50, "op": "kept"}));
    let (status, _) = herald.post(
        "/api/notify/delta",
        Some(KEY),
        r#"{"sessionId":"job","jobId":"j","text":"tok"}"#,
    );
    assert_eq!(status, 202);
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), &m["delta"]),
        (Some("ai_delta"), &json!({"jobId": "j", "text": "tok"}))
    );

    let (status, _) = herald.post(
        "/api/publish",
        Some(KEY),
        r#"{"channel":"news","data":{"headline":"h"}}"#,
    );
    assert_eq!(status, 202);
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["headline"].as_str(), m["channel"].as_str()),
        (Some("h"), Some("news"))
    );

    let (status, _) = herald.post("/api/broadcast", Some(KEY), r#"{"data":{"type":"all"}}"#);
    assert_eq!(status, 202);
    assert_eq!(next_json(&mut ws).await["type"], "all");

    let batch = r#"[
        {"op":"notify/start","sessionId":"job","model":"m"},
        {"op":"publish","channel":"n\u0065ws","data":{"n":2}},
        {"op":"publish","channel":"news"},
        {"op":"teleport"},
        {"op":"notify/complete","sessionId":"job","text":"done"}
    ]"#;
    let (status, body) = herald.post("/api/batch", Some(KEY), batch);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[2]["status"], 400);
    assert_eq!(results[2]["error"]["code"], "invalid_argument");
    assert_eq!(results[3]["status"], 400);
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), &m["task"]),
        (Some("ai_start"), &json!({"model": "m"}))
    );
    assert_eq!(next_json(&mut ws).await["n"], 2);
    assert_eq!(next_json(&mut ws).await["type"], "ai_complete");

    // Stats and metrics answer to the API key (the default admin token).
    let (status, _, stats) = http(herald.port, "GET", "/api/ws/stats", Some(KEY), "");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    // Six channel publications; the broadcast is not one.
    assert_eq!(stats["publications"], 6);
    let (status, head, metrics) = http(herald.port, "GET", "/metrics", Some(KEY), "");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        metrics.contains("\nherald_publications_total 6\n"),
        "{metrics}"
    );
    assert_eq!(http(herald.port, "GET", "/metrics", None, "").0, 401);
    let mut herald = herald;
    assert!(herald.terminate().success(), "a graceful stop exits with 0");
}

#[test]
fn errors_have_statuses_and_json_bodies() {
    let herald = Herald::start(&config("max_channels = 10\n"));
    let code = |(status, body): (u16, Value)| {
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    let publish = r#"{"channel":"c","data":{}}"#;
    assert_eq!(
        code(herald.post("/api/publish", None, publish)),
        (401, "unauthorized".into())
    );
    assert_eq!(
        code(herald.post("/api/publish", Some("test-api-key-0123456780"), publish)),
        (401, "unauthorized".into())
    );
    assert_eq!(
        code(herald.post("/api/publish", Some(KEY), "{nope")),
        (400, "invalid_json".into())
    );
    assert_eq!(
        code(herald.post("/api/publish", Some(KEY), r#"{"channel":"c","data":[1]}"#)),
        (400, "invalid_json".into())
    );
    assert_eq!(
        code(herald.post("/api/send", Some(KEY), r#"{"clientId":"gone","data":{}}"#)),
        (404, "unknown_client".into())
    );
    assert_eq!(
        code(herald.post("/api/nothing", Some(KEY), "{}")),
        (404, "not_found".into())
    );
    let (status, head, _) = http(herald.port, "GET", "/api/publish", Some(KEY), "");
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
    let big = format!(
        r#"{{"channel":"c","data":{{"x":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    assert_eq!(herald.post("/api/publish", Some(KEY), &big).0, 413);

    // The host may fill the channel table; the next new channel is 507, nothing queued.
    let items: Vec<String> = (0..12)
        .map(|n| format!(r#"{{"op":"publish","channel":"c{n}","data":{{}}}}"#))
        .collect();
    let (status, body) = herald.post("/api/batch", Some(KEY), &format!("[{}]", items.join(",")));
    assert_eq!(status, 200);
    let last = &body["results"][11];
    assert_eq!(
        (last["status"].as_u64(), last["error"]["code"].as_str()),
        (Some(507), Some("limit"))
    );
}

#[test]
fn it_refuses_to_start_without_an_api_key_unless_told_on_loopback() {
    let run = |toml: &str, args: &[&str]| {
        let (child, file) = spawn_herald(toml, args, Stdio::piped());
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(file);
        out
    };
    let out = run("port = 0\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no api_key"));
    let out = run("port = 0\nhost = \"0.0.0.0\"\n", &["--insecure-no-api-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = run("port = 0\napi_key = \"short\"\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        "port = 0\nno_such_key = 1\napi_key = \"0123456789abcdef\"\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));

    // On loopback with the flag it runs, the API open, and stops on SIGTERM.
    let mut open = Herald::start_with("port = 0\n", &["--insecure-no-api-key"]);
    let (status, _) = open.post("/api/broadcast", None, r#"{"data":{"type":"x"}}"#);
    assert_eq!(status, 202);
    assert!(open.terminate().success());
}
