//! Logs: the host's handler receives Herald's debug lines; stderr is plain text when it
//! is not a terminal, or JSON lines with `HERALD_LOG_FORMAT=json`.
mod common;
use common::*;
use herald::{LogLevel, LogRecord};
use serde_json::Value;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Waits for a record whose message starts with `prefix` and contains `detail`.
fn wait_record(records: &mpsc::Receiver<LogRecord>, prefix: &str, detail: &str) -> LogRecord {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match records.recv_timeout(left) {
            Ok(r) if r.message.starts_with(prefix) && r.message.contains(detail) => return r,
            Ok(r) => seen.push(r),
            Err(_) => panic!("no {prefix:?} record with {detail} within {WAIT:?}; saw {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_handler_receives_connections_subscriptions_and_closes() {
    let (tx, records) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    assert!(herald::set_log_handler(
        LogLevel::Debug,
        Some(Arc::new(move |r: &LogRecord| {
            let _ = tx.lock().unwrap().send(r.clone());
        })),
    ));
    let server = start("");
    let mut c = connect(&server, "?userId=ann&sessionId=job").await;
    subscribe(&mut c.ws, "channel", "news").await;
    let client = format!("client={}", c.id);

    let connected = wait_record(&records, "client connected", &client);
    assert_eq!(connected.level, LogLevel::Debug);
    assert_eq!(connected.target, "herald::connection");
    assert!(
        connected.message.contains("user=ann session=job"),
        "{connected:?}"
    );
    assert!(
        connected.message.contains("remote=127.0.0.1:"),
        "{connected:?}"
    );
    wait_record(&records, "subscribed", &format!("{client} channel=news"));
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    c.ws.close(Some(bye)).await.unwrap();
    let closed = wait_record(&records, "client closed", &client);
    assert!(
        closed.message.ends_with("code=1000 reason=bye"),
        "{closed:?}"
    );

    // Above the handler's level, nothing arrives; removed, nothing either.
    herald::set_log_handler(LogLevel::Warn, None);
    let c = connect(&server, "").await;
    drop(c);
    wait_stats(&server, |s| s["activeConnections"] == 0).await;
    assert!(
        records.recv_timeout(Duration::from_millis(300)).is_err(),
        "a removed handler received a record"
    );
    server.stop(WAIT).unwrap();
}

/// Run by the stderr tests below as a child process whose stderr is a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the stderr tests"]
async fn child_server_logging_to_stderr() {
    let server = start("");
    let c = connect(&server, "?sessionId=piped").await;
    drop(c);
    wait_stats(&server, |s| s["activeConnections"] == 0).await;
    server.stop(WAIT).unwrap();
}

fn child_stderr(format: Option<&str>) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--ignored",
            "--exact",
            "child_server_logging_to_stderr",
            "--nocapture",
        ])
        .env("HERALD_LOG", "herald=debug")
        .env_remove("HERALD_LOG_FORMAT");
    if let Some(format) = format {
        child.env("HERALD_LOG_FORMAT", format);
    }
    let output = child.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "child failed: {stderr}");
    stderr
}

#[test]
fn stderr_is_plain_text_when_it_is_not_a_terminal() {
    let stderr = child_stderr(None);
    assert!(stderr.contains("client connected"), "{stderr}");
    assert!(stderr.contains("client closed"), "{stderr}");
    assert!(stderr.contains("herald started"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "ANSI codes in a pipe: {stderr:?}");
}

#[test]
fn stderr_is_one_json_object_a_line_with_the_json_format() {
    let stderr = child_stderr(Some("json"));
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let connected = lines
        .iter()
        .find(|l| l["message"] == "client connected")
        .unwrap_or_else(|| panic!("no connect line in {stderr}"));
    assert_eq!(connected["level"], "DEBUG");
    assert_eq!(connected["target"], "herald::connection");
    assert!(connected["client"].as_str().is_some_and(|c| c.len() == 16));
    assert_eq!(connected["session"], "piped");
    assert_eq!(connected["user"], "-");
    assert!(connected["timestamp"].is_string());
}
