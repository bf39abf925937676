//! The demo: serves on 127.0.0.1:3001 and runs a simulated AI task on session `demo`
//! every few seconds.
//!
//!   cargo run --release --example demo
//!   # in another terminal, any WebSocket client, e.g.:
//!   npx wscat -c 'ws://127.0.0.1:3001/ws?sessionId=demo'

use herald::{Config, Server};
use std::time::Duration;

fn main() {
    let mut config = Config::default();
    if let Ok(port) = std::env::var("HERALD_DEMO_PORT") {
        config.port = port
            .parse()
            .expect("HERALD_DEMO_PORT must be a port number");
    }
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let port = server.port();
    println!("Herald demo on ws://127.0.0.1:{port}/ws?sessionId=demo");
    println!("  stats:  curl http://127.0.0.1:{port}/api/ws/stats");
    println!("  client: npx wscat -c 'ws://127.0.0.1:{port}/ws?sessionId=demo'");
    println!("Every few seconds a simulated AI task streams ai_start -> ai_progress -> ai_complete (or ai_error).");

    // Runs on Herald's event thread, never on a network thread.
    server
        .set_event_handler(Some(std::sync::Arc::new(|event: &herald::Event| {
            println!("event: {}", event.to_json())
        })))
        .expect("server is running");

    let models = ["demo-llm-small", "demo-llm-large", "demo-coder"];
    for task in 1u64.. {
        let id = format!("task-{task}");
        let model = models[(task as usize) % models.len()];
        println!("running {id} on {model}");
        let _ = server.notify_ai_start(
            "demo",
            &format!(
                r#"{{"taskId":"{id}","model":"{model}","prompt":"Summarize the quarterly report"}}"#
            ),
        );
        let steps = 5;
        let mut failed = false;
        for step in 1..=steps {
            std::thread::sleep(Duration::from_millis(600));
            // Every fifth task fails half-way, so front ends see ai_error too.
            if task % 5 == 0 && step == 3 {
                failed = true;
                let _ = server.notify_ai_error("demo", &format!(r#"{{"taskId":"{id}","code":"model_overloaded","message":"the model is overloaded; retry later"}}"#));
                break;
            }
            let percent = step * 100 / steps;
            let _ = server.notify_ai_progress(
                "demo",
                &format!(r#"{{"taskId":"{id}","percent":{percent},"stage":"step {step} of {steps}","tokens":{}}}"#, step * 120),
            );
        }
        if !failed {
            let _ = server.notify_ai_complete(
                "demo",
                &format!(
                    r#"{{"taskId":"{id}","output":"The report shows steady growth.","tokens":{}}}"#,
                    steps * 120
                ),
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}
