//! The committed contract schema must be exactly what the Rust types generate.
//! Regenerate: `HERALD_BLESS_SCHEMA=1 cargo test --test schema`.

#[test]
fn committed_schema_matches_the_generated_one() {
    let generated = herald::contract_schema();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/herald.schema.json");
    if std::env::var_os("HERALD_BLESS_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).expect("include/herald.schema.json is missing");
    assert!(
        generated == committed,
        "include/herald.schema.json is stale: run `HERALD_BLESS_SCHEMA=1 cargo test --test schema` and commit the result"
    );
}
