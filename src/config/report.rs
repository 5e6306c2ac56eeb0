//! Printing configuration outcomes the way etcd 3.5 does: command-line syntax errors as
//! plain text plus the short usage on stderr; other errors and warnings as JSON log lines.
//!
//! Invariant: `report_error` returns the exit status the process must end with.

use std::io::Write as _;

use tracing::Level;

use super::error::{ConfigError, ENV_CONFLICT_MSG};
use super::help::USAGE_SHORT;
use super::Config;
use crate::logging;

/// Prints `err` to stderr like etcd and returns the exit status (1 or 2).
pub fn report_error(err: &ConfigError) -> i32 {
    if err.is_usage_error() {
        let text = format!("{err}\n{USAGE_SHORT}");
        // Nothing sensible remains to be done if stderr is gone.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    } else if let ConfigError::ConfigFileUrl { .. } = err {
        // etcd prints this one with fmt.Fprintf before its logger exists.
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("{err}\n").as_bytes());
    } else if let ConfigError::EnvConflict { key } = err {
        logging::emit(
            Level::ERROR,
            ENV_CONFLICT_MSG,
            &[("environment-variable", key.as_str())],
        );
    } else {
        logging::emit(
            Level::WARN,
            "failed to verify flags",
            &[("error", err.to_string().as_str())],
        );
    }
    err.exit_code()
}

impl Config {
    /// Logs the warnings collected while parsing (call after `logging::init`).
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            let fields = warning.fields();
            let borrowed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            logging::emit(Level::WARN, warning.message(), &borrowed);
        }
    }
}
