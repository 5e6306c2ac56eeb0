//! A TLS configuration that follows its files on disk, so a certificate rotated in place
//! (rewritten, renamed over, or swapped behind a symlink as Kubernetes does with secrets) is
//! used without a restart, as etcd re-reads its certificate files for each handshake.
//!
//! [`Reloading::current`] looks at the files' metadata (modification time, length, inode) on
//! every call (each accepted TLS connection or peer dial) and rebuilds the configuration only
//! when one of them changed. A change that does not build (a certificate written before its
//! key, a truncated file) keeps the previous configuration and logs why; the next change is
//! tried again.
//!
//! Invariant: `current` always returns a configuration that was built from files that were
//! valid together at some point; never a half-updated one.
//! Invariant: the lock is never held across an `.await` (there is none here).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::tls::{Side, TlsError};
use crate::config::TlsFiles;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// Stamps of the certificate, key, CA and CRL files (`None`: not configured or unreadable).
type Stamps = [Option<Stamp>; 4];

fn stamp(path: Option<&Path>) -> Option<Stamp> {
    let meta = std::fs::metadata(path?).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn stamps(files: &TlsFiles) -> Stamps {
    [
        stamp(files.cert_file.as_deref()),
        stamp(files.key_file.as_deref()),
        stamp(files.trusted_ca_file.as_deref()),
        stamp(files.crl_file.as_deref()),
    ]
}

/// Builds a configuration from the files (`net::tls`'s loaders).
pub type Build<T> = fn(&TlsFiles, Side) -> Result<T, TlsError>;

struct State<T> {
    config: Arc<T>,
    stamps: Stamps,
}

/// A configuration of type `T` kept in step with its files.
pub struct Reloading<T> {
    files: TlsFiles,
    side: Side,
    build: Build<T>,
    state: Mutex<State<T>>,
}

impl<T> Reloading<T> {
    /// Builds the first configuration; its errors are the start-up errors.
    pub fn load(files: &TlsFiles, side: Side, build: Build<T>) -> Result<Self, TlsError> {
        let before = stamps(files);
        let config = Arc::new(build(files, side)?);
        Ok(Reloading {
            files: files.clone(),
            side,
            build,
            state: Mutex::new(State {
                config,
                stamps: before,
            }),
        })
    }

    /// The configuration for the next handshake, rebuilt first if a file changed.
    pub fn current(&self) -> Arc<T> {
        let now = stamps(&self.files);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now != state.stamps {
            state.stamps = now;
            match (self.build)(&self.files, self.side) {
                Ok(config) => {
                    state.config = Arc::new(config);
                    tracing::info!(side = ?self.side, "reloaded TLS certificate files");
                }
                Err(e) => tracing::warn!(
                    side = ?self.side,
                    error = %e,
                    "cannot reload TLS certificate files; keeping the previous ones"
                ),
            }
        }
        state.config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(files: &TlsFiles, _side: Side) -> Result<String, TlsError> {
        let path = files.cert_file.as_deref().ok_or(TlsError::NoKeyPair)?;
        let text = std::fs::read_to_string(path).map_err(|error| TlsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        if text.starts_with("bad") {
            return Err(TlsError::NoPem {
                what: "certificate",
                path: path.to_path_buf(),
            });
        }
        Ok(text)
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_keeps_the_previous_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "one").expect("write");
        let files = TlsFiles {
            cert_file: Some(cert.clone()),
            ..TlsFiles::default()
        };
        let r = Reloading::load(&files, Side::Client, counting).expect("load");
        assert_eq!(*r.current(), "one");
        // A new file renamed over the old one (a new inode), as rotation tools do.
        let next = dir.path().join("next.pem");
        std::fs::write(&next, "two!").expect("write");
        std::fs::rename(&next, &cert).expect("rename");
        assert_eq!(*r.current(), "two!");
        std::fs::write(&next, "bad file").expect("write");
        std::fs::rename(&next, &cert).expect("rename");
        assert_eq!(
            *r.current(),
            "two!",
            "a bad file keeps the previous configuration"
        );
        std::fs::write(&next, "three").expect("write");
        std::fs::rename(&next, &cert).expect("rename");
        assert_eq!(*r.current(), "three", "the next good file is taken");
    }
}
