mod common;
use common::*;

#[tokio::test]
async fn notify_reaches_a_session_subscriber() {
    let server = start("");
    let mut c = connect(&server, "?sessionId=s1").await;
    server.notify_ai_start("s1", r#"{"name":"t"}"#).unwrap();
    let m = next_json(&mut c.ws).await;
    assert_eq!(m["type"], "ai_start");
    assert_eq!(m["task"]["name"], "t");
    assert_eq!(m["seq"], 1);
    let s = server.clone();
    blocking(move || s.stop(WAIT)).await.unwrap();
    assert_eq!(close_code(&mut c.ws).await, Some(1001));
}
