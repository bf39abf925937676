//! Shared by the fuzz targets (the unit module in src and the integration tests): the
//! committed corpus, byte-level mutations of it, and how many cases a run makes.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// Panics anywhere in this process since the hook went in, Herald's runtime threads
/// included (a panicking connection task would otherwise only look like a closed socket).
static PANICS: AtomicUsize = AtomicUsize::new(0);

pub fn panics() -> usize {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// `PROPTEST_CASES` overrides the default count of every target (for long runs).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runner configuration whose failures are kept in `tests/fuzz/regressions/<name>.txt`
/// (committed, replayed first on every run).
pub fn config(name: &'static str, default_cases: u32) -> Config {
    let path: &'static str =
        Box::leak(format!("tests/fuzz/regressions/{name}.txt").into_boxed_str());
    Config {
        cases: cases(default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        // Shrinking a slow case (a real socket) must stay bounded too.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// The seed files of one target, sorted by name: `tests/fuzz/corpus/<target>/*`.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no corpus in {}", dir.display());
    seeds
}

pub fn corpus_text(target: &str) -> Vec<(String, String)> {
    corpus(target)
        .into_iter()
        .map(|(name, bytes)| (name, String::from_utf8(bytes).expect("text seed")))
        .collect()
}

/// Tokens that tend to reach a parser's corners when spliced in.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-",
    b"0",
    b"-1",
    b"1e999",
    b"-0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1.5",
    b"\\u0000",
    b"\\ud800",
    b"\"type\"",
    b"\"ping\"",
    b"\"subscribe\"",
    b"\"sessionId\"",
    b"\"channel\"",
    b"\"since\"",
    b"\"seq\"",
    b"\"epoch\"",
    b"\xf0\x9f\x92\xa9",
    b"\xc3",
    b"\xff",
    b"\x00",
    b"\r\n",
];

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
    /// Two bytes set to "interesting" values (0, 0x7f, 0x80, 0xff): lengths and opcodes.
    Interesting(Index, u8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (
            any::<Index>(),
            prop::sample::select(vec![0u8, 0x7e, 0x7f, 0x80, 0xff])
        )
            .prop_map(|(i, b)| Mutation::Interesting(i, b)),
    ]
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

pub fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[at(i, len)] ^= 1 << bit,
        Mutation::SetByte(i, b) if len > 0 => bytes[at(i, len)] = *b,
        Mutation::Interesting(i, b) if len > 0 => bytes[at(i, len)] = *b,
        Mutation::Insert(i, data) => {
            let p = at(i, len + 1);
            bytes.splice(p..p, data.iter().copied());
        }
        Mutation::InsertToken(i, t) => {
            let p = at(i, len + 1);
            bytes.splice(p..p, TOKENS[t.index(TOKENS.len())].iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let p = at(i, len);
            bytes.drain(p..(p + n).min(len));
        }
        Mutation::Duplicate(i, n) if len > 0 => {
            let p = at(i, len);
            let piece: Vec<u8> = bytes[p..(p + n).min(len)].to_vec();
            bytes.splice(p..p, piece);
        }
        Mutation::Truncate(i) => bytes.truncate(at(i, len + 1)),
        _ => {}
    }
}

pub fn mutated(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for edit in edits {
        apply(&mut bytes, edit);
    }
    bytes
}

/// A seed of the target mutated a few times.
pub fn mutated_seed(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(seeds), mutations()).prop_map(|(seed, edits)| mutated(&seed, &edits))
}

/// Text for the parsers: mutated bytes read as UTF-8, invalid sequences replaced.
pub fn mutated_text(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let seeds = seeds.into_iter().map(String::into_bytes).collect();
    mutated_seed(seeds).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Arbitrary JSON values, with the numbers and strings that tend to break things.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0u64,
            1,
            255,
            256,
            65535,
            65536,
            1 << 24,
            (1 << 24) + 1,
            u32::MAX as u64,
            u64::MAX
        ])
        .prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z:*]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

pub fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "sessionId",
            "channel",
            "since",
            "seq",
            "epoch",
            "port",
            "history",
            "auth"
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

/// Deeply nested text: `depth` openers, closed or not.
pub fn deep_nesting() -> impl Strategy<Value = String> {
    (
        1usize..20_000,
        any::<bool>(),
        prop::sample::select(vec!["[", "{\"a\":", "[{\"b\":"]),
    )
        .prop_map(|(depth, closed, opener)| {
            let mut text = opener.repeat(depth);
            if closed {
                text.push('1');
                for _ in 0..depth {
                    text.push_str(if opener == "[" {
                        "]"
                    } else if opener == "[{\"b\":" {
                        "}]"
                    } else {
                        "}"
                    });
                }
            }
            text
        })
}

/// Runs `check` on cases of `strategy` with `target`'s config (`default_cases` unless
/// PROPTEST_CASES says otherwise), prints how many ran and how long it took, and fails
/// with proptest's minimal case.
pub fn run_counted<S: Strategy>(
    target: &'static str,
    default_cases: u32,
    strategy: S,
    check: impl Fn(S::Value),
) {
    let mut runner = proptest::test_runner::TestRunner::new(config(target, default_cases));
    let started = std::time::Instant::now();
    let ran = AtomicUsize::new(0);
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        check(value);
        Ok(())
    });
    eprintln!(
        "fuzz {target}: {} cases in {:.1?}",
        ran.into_inner(),
        started.elapsed()
    );
    result.unwrap();
}
