//! Logs to stderr when `HERALD_LOG` is set (tracing EnvFilter syntax); quiet otherwise.

use std::sync::Once;

pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let Ok(filter) = std::env::var("HERALD_LOG") else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
            eprintln!("herald: ignoring invalid HERALD_LOG {filter:?}: {e}");
            tracing_subscriber::EnvFilter::new("off")
        });
        // A host that installed its own subscriber keeps it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    });
}
