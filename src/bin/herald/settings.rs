//! The command line and the TOML config file.

use herald::Config;
use std::net::IpAddr;
use std::path::PathBuf;

/// Shortest API key accepted: a guessable key is no key.
const MIN_API_KEY: usize = 16;

pub struct Args {
    config: Option<PathBuf>,
    insecure_no_api_key: bool,
}

pub enum Parsed {
    Run(Args),
    /// Print this and exit successfully (`--help`, `--version`).
    Exit(String),
}

impl Args {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let mut parsed = Args {
            config: None,
            insecure_no_api_key: false,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" | "-c" => {
                    let path = args.next().ok_or("--config needs a file")?;
                    parsed.config = Some(path.into());
                }
                "--insecure-no-api-key" => parsed.insecure_no_api_key = true,
                "--help" | "-h" => return Ok(Parsed::Exit(crate::USAGE.into())),
                "--version" | "-V" => {
                    return Ok(Parsed::Exit(format!("herald {}", herald::version())))
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Parsed::Run(parsed))
    }
}

pub struct Settings {
    pub config: Config,
    pub api_key: Option<String>,
}

impl Settings {
    pub fn load(args: &Args) -> Result<Settings, String> {
        let mut json = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml_to_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => serde_json::Value::Object(Default::default()),
        };
        let object = json.as_object_mut().expect("a TOML document is a table");
        let file_key = match object.remove("api_key") {
            None => None,
            Some(serde_json::Value::String(key)) => Some(key),
            Some(_) => return Err("api_key must be a string".into()),
        };
        let api_key = std::env::var("HERALD_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or(file_key);
        let mut config = Config::from_json(&json.to_string()).map_err(|e| e.to_string())?;
        match &api_key {
            Some(key) if key.len() < MIN_API_KEY => {
                return Err(format!("api_key must be at least {MIN_API_KEY} characters"))
            }
            Some(key) => {
                if config.admin_token.is_none() {
                    config.admin_token = Some(key.clone());
                }
            }
            None if !args.insecure_no_api_key => {
                return Err("no api_key: set it in the config file or HERALD_API_KEY \
                     (or, on a loopback host only, pass --insecure-no-api-key)"
                    .into())
            }
            None if !is_loopback(&config.host) => {
                return Err(format!(
                    "--insecure-no-api-key is for loopback hosts only, not {:?}",
                    config.host
                ))
            }
            None => eprintln!("herald: WARNING: the publish API has no key (loopback only)"),
        }
        Ok(Settings { config, api_key })
    }
}

fn toml_to_json(text: &str) -> Result<serde_json::Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_tables_become_nested_json() {
        let json = toml_to_json(
            "port = 0\napi_key = \"k\"\n[history]\nsize = 5\n[auth]\npublic_channels = [\"news\"]\n",
        )
        .unwrap();
        assert_eq!(json["port"], 0);
        assert_eq!(json["history"]["size"], 5);
        assert_eq!(json["auth"]["public_channels"][0], "news");
        assert!(toml_to_json("port = ").is_err());
    }

    #[test]
    fn only_loopback_hosts_are_loopback() {
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0") && !is_loopback("10.1.2.3"));
    }
}
