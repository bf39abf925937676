//! The committed C header must be exactly what build.rs generates from src/ffi.

#[test]
fn committed_header_matches_the_generated_one() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/herald.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/herald.h"))
            .expect("include/herald.h is missing");
    assert!(
        generated == committed,
        "include/herald.h is stale: run `HERALD_BLESS_HEADER=1 cargo build` and commit the result"
    );
}
