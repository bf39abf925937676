//! Static files served on the WebSocket port, over a real socket.

mod common;

use herald::{Config, Server, StaticFiles};

async fn request(port: u16, method: &str, path: &str) -> String {
    common::http_raw(port, method, path, "").await
}

#[tokio::test]
async fn serves_embedded_files_beside_the_websocket() {
    let files = StaticFiles::default();
    files
        .add("/", "text/html; charset=utf-8", b"<h1>dashboard</h1>")
        .unwrap();
    let config = Config {
        port: 0,
        static_files: files.clone(),
        ..Config::default()
    };
    let server = common::blocking(move || Server::start(config).unwrap()).await;
    let port = server.port();

    let page = request(port, "GET", "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("content-type: text/html; charset=utf-8"),
        "{page}"
    );
    assert!(page.ends_with("<h1>dashboard</h1>"), "{page}");

    // Added after start: the server shares the host's handle.
    files
        .add("/app.js", "text/javascript; charset=utf-8", b"1+1")
        .unwrap();
    assert!(request(port, "GET", "/app.js").await.ends_with("1+1"));
    let head = request(port, "HEAD", "/app.js").await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("content-length: 3"),
        "{head}"
    );

    assert!(request(port, "GET", "/missing")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(request(port, "POST", "/").await.starts_with("HTTP/1.1 404"));
    // The server's own routes win.
    assert!(request(port, "GET", "/healthz").await.ends_with("ok\n"));
    let mut client = common::connect(&server, "").await;
    common::send(&mut client.ws, r#"{"type":"ping"}"#).await;
    assert_eq!(common::next_json(&mut client.ws).await["type"], "pong");
    common::blocking(move || server.stop(std::time::Duration::from_secs(5)).unwrap()).await;
}
