//! Property-based fuzzing of the client-message parser (stable Rust, proptest): it never
//! panics on any text, and what it accepts keeps the protocol's invariants. The committed
//! corpus (`tests/fuzz/corpus/client_message`) is replayed first and seeds the mutations.
//! `PROPTEST_CASES=50000 cargo test --lib fuzz_tests` runs a long session.

#[path = "../tests/fuzz/support.rs"]
mod support;

use crate::protocol::{parse_client_message, ClientMessage, InvalidMessage, Target, MAX_NAME_LEN};
use proptest::prelude::*;
use serde_json::Value;

const TARGET: &str = "client_message";
/// A refusal goes back to the client; it must never echo a large input.
const MAX_REFUSAL_LEN: usize = 512;

/// The top-level fields of an accepted message, values as text: JSON's grammar allows
/// numbers such as 1e999 that `serde_json::Value` refuses, and fields the protocol does
/// not read are passed on to the host untouched.
type Fields<'a> = std::collections::HashMap<String, &'a serde_json::value::RawValue>;

/// The value of `key` unless absent or null (the parser treats both alike).
fn present(object: &Fields, key: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(object.get(key)?.get())
        .expect("a field the protocol reads parses as a JSON value");
    (!value.is_null()).then_some(value)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

fn check_target(object: &Fields, target: Option<&Target>) {
    let session = present(object, "sessionId");
    let channel = present(object, "channel");
    match target {
        Some(Target::Session(s)) => {
            assert!(valid_name(s), "session id {s:?}");
            assert_eq!(session, Some(Value::String(s.clone())));
            assert_eq!(channel, None);
        }
        Some(Target::Channel(c)) => {
            assert!(valid_name(c), "channel {c:?}");
            assert_eq!(channel, Some(Value::String(c.clone())));
            assert_eq!(session, None);
        }
        None => assert!(session.is_none() && channel.is_none()),
    }
}

/// Runs the parser on `text` and checks every invariant of its answer.
fn check(text: &str) {
    let message = match parse_client_message(text) {
        Err(InvalidMessage(reason)) => {
            assert!(!reason.is_empty());
            assert!(
                reason.len() <= MAX_REFUSAL_LEN,
                "refusal of {} bytes",
                reason.len()
            );
            return;
        }
        Ok(message) => message,
    };
    let object: Fields = serde_json::from_str(text).expect("accepted text is a JSON object");
    // What a strict parser reads (nesting in particular), except two things JSON's grammar
    // allows and Herald passes on to the host untouched: numbers beyond f64 (1e999, read
    // as infinity by Python and JavaScript) and lone surrogate escapes ("\ud800").
    if let Err(e) = serde_json::from_str::<Value>(text) {
        let e = e.to_string();
        let tolerated = ["number out of range", "hex escape", "surrogate"];
        assert!(tolerated.iter().any(|t| e.contains(t)), "{e}");
    }
    let kind = present(&object, "type");
    let kind = kind
        .as_ref()
        .and_then(Value::as_str)
        .expect("a string type");
    match &message {
        ClientMessage::Ping => assert_eq!(kind, "ping"),
        ClientMessage::Subscribe {
            target,
            since,
            presence,
        } => {
            assert_eq!(kind, "subscribe");
            assert_eq!(
                *presence,
                present(&object, "presence").and_then(|p| p.as_bool())
            );
            check_target(&object, Some(target));
            match (since, present(&object, "since")) {
                (None, None) => {}
                (Some(since), Some(given)) => {
                    assert_eq!(given["seq"].as_u64(), Some(since.seq));
                    assert_eq!(given["epoch"].as_str(), Some(since.epoch.as_str()));
                }
                (since, given) => panic!("since {since:?} from {given:?}"),
            }
        }
        ClientMessage::Presence { target, status } => {
            assert_eq!(kind, "presence");
            check_target(&object, Some(target));
            let given = present(&object, "status");
            assert_eq!(
                status.as_deref(),
                given.as_ref().and_then(Value::as_str),
                "status"
            );
        }
        ClientMessage::Unsubscribe { target } => {
            assert_eq!(kind, "unsubscribe");
            check_target(&object, target.as_ref());
        }
        ClientMessage::Cancel { session_id, job_id } => {
            assert_eq!(kind, "cancel");
            assert_eq!(
                present(&object, "sessionId")
                    .as_ref()
                    .and_then(Value::as_str),
                Some(session_id.as_str())
            );
            let given = present(&object, "jobId");
            assert_eq!(given.as_ref().and_then(Value::as_str), job_id.as_deref());
        }
        ClientMessage::Custom(raw) => {
            assert!(
                !matches!(kind, "ping" | "subscribe" | "unsubscribe" | "presence"),
                "{kind}"
            );
            if kind == "cancel" {
                assert!(present(&object, "sessionId").is_none(), "{text}");
            }
            // What goes to the host is the client's whole object, unchanged.
            assert_eq!(raw.get(), text.trim_matches([' ', '\t', '\n', '\r']));
        }
    }
}

/// A client message built field by field from raw JSON text, so duplicate keys, huge
/// numbers and odd names all occur.
fn message_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        prop::sample::select(vec![
            "\"ping\"",
            "\"subscribe\"",
            "\"unsubscribe\"",
            "\"chat\"",
            "1",
            "null",
            "{}"
        ])
        .prop_map(String::from),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
    ];
    let name = prop_oneof![
        "[a-z0-9:_-]{1,20}".prop_map(|s| Value::String(s).to_string()),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        (250usize..260).prop_map(|n| Value::String("n".repeat(n)).to_string()),
        (80usize..90).prop_map(|n| Value::String("💩".repeat(n)).to_string()),
        support::json_value().prop_map(|v| v.to_string()),
    ];
    let seq = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "-1",
            "-0",
            "0.0",
            "1e2",
            "1e999",
            "18446744073709551616",
            "\"1\"",
            "null"
        ])
        .prop_map(String::from),
    ];
    let since = prop_oneof![
        (seq, name.clone()).prop_map(|(seq, epoch)| format!(r#"{{"seq":{seq},"epoch":{epoch}}}"#)),
        support::json_value().prop_map(|v| v.to_string()),
    ];
    let field = prop_oneof![
        kind.prop_map(|v| ("type", v)),
        name.clone().prop_map(|v| ("sessionId", v)),
        name.prop_map(|v| ("channel", v)),
        since.prop_map(|v| ("since", v)),
        support::json_value().prop_map(|v| ("extra", v.to_string())),
    ];
    prop::collection::vec(field, 0..6).prop_map(|fields| {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

fn any_text() -> impl Strategy<Value = String> {
    let seeds: Vec<String> = support::corpus_text(TARGET)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    prop_oneof![
        3 => message_like(),
        3 => support::mutated_text(seeds),
        2 => support::json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => support::deep_nesting(),
        1 => support::deep_nesting().prop_map(|deep| {
            format!(r#"{{"type":"subscribe","channel":"c","since":{deep}}}"#)
        }),
    ]
}

#[test]
fn corpus_replays() {
    for (name, text) in support::corpus_text(TARGET) {
        let outcome = std::panic::catch_unwind(|| check(&text));
        assert!(outcome.is_ok(), "corpus seed {name}");
    }
}

#[test]
fn corpus_seeds_keep_their_meaning() {
    // A few seeds pin down the parser's answer, so the replay is more than "no panic".
    let text = |name: &str| {
        support::corpus_text(TARGET)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    };
    assert_eq!(
        parse_client_message(&text("01-ping.json")),
        Ok(ClientMessage::Ping)
    );
    assert!(parse_client_message(&text("08-since-max-seq.json")).is_ok());
    assert!(parse_client_message(&text("25-nesting-at-the-limit.json")).is_ok());
    for refused in [
        "09-since-seq-overflow.json",
        "10-since-negative.json",
        "11-both-targets.json",
        "12-control-char-name.json",
        "13-name-257-bytes.json",
        "15-duplicate-type.json",
        "22-array.json",
        "23-string.json",
        "26-nesting-past-the-limit.json",
    ] {
        assert!(parse_client_message(&text(refused)).is_err(), "{refused}");
    }
}

#[test]
fn client_messages_never_panic_and_keep_the_invariants() {
    support::run_counted(TARGET, 2000, any_text(), |text| check(&text));
}

#[test]
fn a_million_levels_of_nesting_are_answered_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let deep = format!("{}1{}", open.repeat(1_000_000), close.repeat(1_000_000));
        for text in [deep.clone(), format!(r#"{{"type":"x","a":{deep}}}"#)] {
            check(&text);
            assert!(
                parse_client_message(&text).is_err(),
                "nesting past serde_json's limit"
            );
        }
    }
}
