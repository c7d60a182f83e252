//! Logs go to stderr as text or JSON. `RUST_LOG` overrides `log.filter`.
//! Text is coloured only when stderr is a terminal: a log file or a
//! journal gets plain lines, and JSON never carries escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let wanted = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| config.filter.clone());
    // rumqttd logs every connection at info and ordinary disconnects as
    // errors, which would drown ours; it stays quiet unless asked for by name.
    let wanted = if wanted.contains("rumqttd") {
        wanted
    } else {
        format!("{wanted},rumqttd=off")
    };
    let filter = EnvFilter::try_new(&wanted).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    // Already initialised (tests): keep the first.
    let _ = result;
}
