//! Builds examples/c with the system compiler against include/herald.h and the static
//! library, runs it, and watches it with a real WebSocket client.
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn the_c_host_streams_a_task_to_a_websocket_client() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("make")
        .args(["-s", "-C", "examples/c", "PROFILE=debug"])
        .arg(format!("TARGET={}", target_dir().display()))
        .current_dir(&root)
        .status()
        .expect("running make");
    assert!(status.success(), "building examples/c failed");

    let mut host = Command::new(root.join("examples/c/host"))
        .args(["0", "from-c"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the C host");
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("unexpected first line {first:?}"));
    let output = std::thread::spawn(move || lines.map(|l| l.unwrap()).collect::<Vec<_>>());

    let url = format!("ws://127.0.0.1:{port}/ws?sessionId=from-c");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    let start = next_json(&mut ws).await;
    assert_eq!(
        (start["type"].as_str(), start["task"]["model"].as_str()),
        (Some("ai_start"), Some("demo-llm"))
    );
    for pct in [25, 50, 75, 100] {
        let m = next_json(&mut ws).await;
        assert_eq!(
            (m["type"].as_str(), m["progress"]["percent"].as_i64()),
            (Some("ai_progress"), Some(pct))
        );
    }
    let done = next_json(&mut ws).await;
    assert_eq!(
        (done["type"].as_str(), done["result"]["output"].as_str()),
        (Some("ai_complete"), Some("hello from C"))
    );
    assert_eq!(
        close_code(&mut ws).await,
        Some(1001),
        "the host stopped gracefully"
    );

    let status = blocking(move || host.wait()).await.unwrap();
    assert!(status.success(), "the C host exited with {status}");
    let output = output.join().unwrap().join("\n");
    assert!(
        output.contains("bad JSON rejected: task is not valid JSON"),
        "{output}"
    );
    assert!(output.contains("\"type\":\"subscribed\""), "{output}");
    assert!(output.contains("stopped: 0"), "{output}");
}
