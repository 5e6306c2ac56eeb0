//! net/ — the listening side of every socket the member serves: binding, accepting, and what
//! happens to an accepted connection before the HTTP/2 server sees it.
//!
//! - `listener`: bind (port 0 allowed), accept loop, serve a tonic router with shutdown; the
//!   one place with a madsim branch for serving.
//! - `conn` + `inbound` + `hpack`: the connection wrapper that makes every `:authority` etcd
//!   clients send acceptable to the h2 crate, which resets streams whose `:authority` is not a
//!   plain `host:port` (etcdctl 3.4 sends `http://host:port`, etcd 3.5's balancer
//!   `#initially=[...]`). Header blocks are re-encoded without dynamic-table insertions; all
//!   other frames pass through.
//!
//! Invariant: server-to-client bytes are never touched.
//! Invariant: nothing in here knows the etcd API; `server` and `raft::peer` bring the routers.

#[cfg(not(madsim))]
pub mod conn;
pub mod hpack;
pub mod inbound;
pub mod listener;

pub use listener::{Listener, ListenerSettings};

#[cfg(all(test, not(madsim)))]
mod tests;
