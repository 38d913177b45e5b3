//! Logging setup: human-readable lines by default, one JSON object per line
//! with `LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`; a filter
//! that does not parse stops the binary, like every other bad setting). Spans
//! carry the request id, method, user id, status code and latency of each
//! RPC; nothing secret is ever put in a field.

use tracing_subscriber::{EnvFilter, fmt::format::FmtSpan};

use crate::config::LogFormat;

pub fn init(format: LogFormat) -> crate::Result<()> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| crate::Error::internal(format!("RUST_LOG {directives:?}: {e}")))?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests start many servers) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .try_init(),
    };
    Ok(())
}
