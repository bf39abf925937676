//! The host contract as one JSON Schema (draft 2020-12), derived from the Rust types:
//! the config, the events, the authorizer's request and decision, the stats, and the
//! C status codes. Committed as `include/herald.schema.json` (a test keeps it current);
//! the bindings test their own types against it.

use crate::auth::{AuthDecision, AuthRequest};
use crate::config::Config;
use crate::error::ErrorKind;
use crate::events::Event;
use crate::ffi::herald_status;
use crate::stats::Snapshot;
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

/// The contract's JSON Schema, pretty-printed with a final newline.
pub fn contract_schema() -> String {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let roots = json!({
        "config": generator.subschema_for::<Config>(),
        "event": generator.subschema_for::<Event>(),
        "authorizeRequest": generator.subschema_for::<AuthRequest>(),
        "authorizeDecision": generator.subschema_for::<AuthDecision>(),
        "stats": generator.subschema_for::<Snapshot<'static>>(),
    });
    let mut defs = generator.take_definitions(true);
    defs.insert("Status".into(), statuses());
    let document = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Herald host contract",
        "description": "What a host exchanges with Herald: `config` (the JSON config), `event` (host events), `authorizeRequest` / `authorizeDecision` (the host authorizer), `stats`, and `Status` (the C ABI's status codes and their error codes).",
        "properties": roots,
        "$defs": defs,
    });
    let mut text = serde_json::to_string_pretty(&document).expect("a schema serializes");
    text.push('\n');
    text
}

/// `herald_status`: each code with its C name and, for errors, the bindings' error code.
fn statuses() -> Value {
    let ok = json!({"const": herald_status::HERALD_OK as i32, "title": "HERALD_OK"});
    let errors = ErrorKind::ALL.iter().map(|&kind| {
        let status = herald_status::from(kind);
        json!({
            "const": status as i32,
            "title": format!("{status:?}"),
            "x-error-code": kind.as_str(),
        })
    });
    json!({
        "description": "herald_status: every fallible C call returns one",
        "oneOf": std::iter::once(ok).chain(errors).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_code_appears_once_in_order() {
        let schema: Value = serde_json::from_str(&contract_schema()).unwrap();
        let codes: Vec<i64> = schema["$defs"]["Status"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["const"].as_i64().unwrap())
            .collect();
        assert_eq!(codes, (0..=13).collect::<Vec<_>>());
    }

    #[test]
    fn config_defaults_come_from_the_core() {
        let schema: Value = serde_json::from_str(&contract_schema()).unwrap();
        let config = &schema["$defs"]["Config"];
        assert_eq!(config["properties"]["port"]["default"], 3001);
        assert_eq!(config["additionalProperties"], false);
        assert!(config["properties"].get("static_files").is_none());
        let auth = &schema["$defs"]["AuthConfig"]["properties"];
        assert_eq!(auth["authorizer_timeout_ms"]["default"], 5000);
    }
}
