//! net/ — every socket the member opens: binding, accepting, and what happens to an accepted
//! connection before the HTTP/2 server sees it; and the dialer members reach each other with.
//!
//! - `listener`: bind (port 0 allowed), accept loop, serve a tonic router with shutdown; the
//!   one place with a madsim branch for serving.
//! - `conn` + `inbound` + `hpack`: the connection wrapper that makes every `:authority` etcd
//!   clients send acceptable to the h2 crate, which resets streams whose `:authority` is not a
//!   plain `host:port` (etcdctl 3.4 sends `http://host:port`, etcd 3.5's balancer
//!   `#initially=[...]`). Header blocks are re-encoded without dynamic-table insertions; all
//!   other frames pass through. `hpack_decoder` decodes the client's blocks (its Huffman
//!   tables are built once per process).
//!
//! - `dialer`: lazily connected channels to peer URLs, plaintext or TLS by the URL's scheme.
//! - `tls` + `transport`: certificates and keys loaded from etcd's flags into rustls settings
//!   (listeners and the peer dialer); the accepted socket with or without its TLS session.
//! - `reload`: TLS settings that follow their files, so certificates rotate without a restart.
//! - `x509`: the subject common name of a verified client certificate (request identity,
//!   `--peer-cert-allowed-cn`).
//!
//! Invariant: server-to-client bytes are never touched.
//! Invariant: nothing in here knows the etcd API; `server` and `raft::peer` bring the routers.

#[cfg(not(madsim))]
pub mod conn;
pub mod dialer;
pub mod hpack;
pub mod hpack_decoder;
pub mod inbound;
pub mod listener;
#[cfg(not(madsim))]
pub mod reload;
pub mod tls;
#[cfg(not(madsim))]
pub mod transport;
pub mod x509;

pub use dialer::{DialError, Dialer};
pub use listener::{Listener, ListenerSettings};
pub use tls::{ClientTls, ServerTls};

#[cfg(all(test, not(madsim)))]
mod tests;
