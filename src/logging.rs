//! tracing set-up: human format on a terminal, JSON with `--log-format json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides -v/-q.
pub fn init(g: &GlobalArgs, format: LogFormat) {
    let level = match (g.verbose, g.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn,ort=warn,hyper=warn,tower_http=info")));
    // A log line that cannot be written is dropped. By default the subscriber
    // reports the failed write with `eprintln!`, which panics when stderr is a
    // closed pipe: inside sqlx's SQLite worker thread that panic left every
    // later query waiting forever (`kino ingest -v 2>&1 | head` hung).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
}
