//! The benchmark tool's error type.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum BenchError {
    /// Bad command line; the text says what and is followed by the usage.
    Usage(String),
    /// Could not reach an endpoint or open a stream.
    Connect(String),
    /// A local file or process operation failed.
    Io(String),
    /// A server did not start or misbehaved during setup.
    Server(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "usage error: {m}"),
            BenchError::Connect(m) => write!(f, "connect: {m}"),
            BenchError::Io(m) => write!(f, "io: {m}"),
            BenchError::Server(m) => write!(f, "server: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}
