//! Finding 8: protocol errors close with the RFC 6455 §7.4 codes and are counted, and a
//! handshake with a duplicated key is refused.

use crate::child::Child;
use crate::outcome::Outcome;
use crate::raw::{self, Closed, RawWs};
use serde_json::json;
use std::time::Duration;

/// How long the server may take to close after a bad frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub async fn protocol_errors() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({})).await) else {
        return o;
    };
    let ping = br#"{"type":"ping"}"#;
    // (label, frame, expected close code)
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "invalid_utf8",
            raw::frame(raw::TEXT, &[0x7b, 0xff, 0xfe, 0x7d], true, 0),
            1007,
        ),
        ("unmasked", raw::frame(raw::TEXT, ping, false, 0), 1002),
        ("rsv1", raw::frame(raw::TEXT, ping, true, 0b100), 1002),
        ("opcode_0x3", raw::frame(0x3, b"x", true, 0), 1002),
        (
            "ping_126_bytes",
            raw::frame(raw::PING, &[b'p'; 126], true, 0),
            1002,
        ),
    ];
    for (label, frame, expected) in &cases {
        let Some(mut ws) = o.step(RawWs::connect(child.port, "/ws").await) else {
            return o;
        };
        let outcome = match tokio::io::AsyncWriteExt::write_all(&mut ws.stream, frame).await {
            Ok(()) => ws.close_outcome(CLOSE_WAIT).await,
            Err(e) => Closed::Error(format!("write: {e}")),
        };
        o.fig(label, &outcome);
        o.expect(
            outcome == Closed::Code(*expected),
            format!("{label}: closed with {outcome}, expected {expected}"),
        );
    }
    match child.stats().await {
        Ok(stats) => {
            let counted = stats.get("protocolErrors").and_then(|v| v.as_u64());
            o.fig(
                "protocolErrors",
                counted.map_or("absent".into(), |n| n.to_string()),
            );
            o.expect(
                counted.is_some_and(|n| n >= cases.len() as u64),
                format!(
                    "stats protocolErrors {counted:?}, expected >= {}",
                    cases.len()
                ),
            );
        }
        Err(e) => o.fail(e),
    }
    let twice = raw::upgrade_request(
        child.port,
        "/ws",
        "Sec-WebSocket-Key: c2Vjb25kIGtleSBoZXJlIQ==\r\nConnection: close\r\n",
    );
    match raw::http_raw(child.port, &twice).await {
        Ok((status, ..)) => {
            o.fig("duplicate_key_status", status);
            o.expect(
                status == 400,
                format!("two Sec-WebSocket-Key headers answered {status}, expected 400"),
            );
        }
        Err(e) => o.fail(format!("duplicate key request: {e}")),
    }
    crate::child::finish(&mut o, child).await;
    o
}
