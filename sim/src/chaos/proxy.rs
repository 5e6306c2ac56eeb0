//! The peer network of a real-process cluster: one TCP proxy per member in front of its peer
//! listener, owned by the test, through which every member reaches every other member.
//!
//! Each member advertises its proxy's address as its peer URL and listens for peers on a
//! private port only its proxy dials, so every peer connection passes a proxy. A proxy learns
//! which member opened an accepted connection by finding the connecting socket in
//! `/proc/net/tcp` and the member process holding it, which gives every *ordered pair* of
//! members its own link state although all members share the loopback interface:
//!
//! - [`Cut::Drop`]: existing connections carrying that direction are closed at once and new
//!   ones are closed on accept (a partition: the kernel answers, the peer is gone).
//! - [`Cut::Stall`]: bytes in that direction are held, unread, until the cut heals (a one-way
//!   blackhole; TCP backpressure does the rest, nothing is reordered or lost).
//! - a delay: every chunk is forwarded no earlier than `delay` after it was read, in order.
//! - a loss rate: each chunk is lost with that chance and "resent" after TCP's retransmission
//!   timeout ([`RTO_MIN`], doubled while the resend is lost too, up to [`RESENDS_MAX`] times),
//!   and everything behind it waits, as in a TCP stream over a lossy link (head-of-line
//!   blocking). Nothing is actually dropped: the stream stays whole, only its timing shows the
//!   loss. A chunk is whatever one read returned (a segment or several).
//!
//! Invariants: bytes are never dropped from or reordered within a connection that stays open
//! (a stream protocol cannot survive that); a connection whose source is not a known member
//! process is closed; the accept loops stop when [`PeerNet`] is dropped, and the connections
//! they spawned end with the runtime that runs the cluster.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read per chunk.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks in flight per direction of a delayed connection (bounds the proxy's memory).
const CHUNKS_IN_FLIGHT: usize = 64;
/// Linux's minimum TCP retransmission timeout: what a lost segment costs at least.
pub const RTO_MIN: Duration = Duration::from_millis(200);
/// How many times in a row a chunk's resend may be lost again (each doubling the wait).
pub const RESENDS_MAX: u32 = 4;
/// Attempts at finding the process behind an accepted connection.
const IDENTIFY_ATTEMPTS: usize = 5;

/// How a directed link is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cut {
    #[default]
    None,
    Drop,
    Stall,
}

/// The state of one directed link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Link {
    pub cut: Cut,
    pub delay: Duration,
    /// Chance (percent) that a chunk is lost and waits for its resend.
    pub loss_pct: u64,
}

impl Link {
    /// When a chunk read at `now` may be written on: after the delay, and after a
    /// retransmission timeout per loss drawn from `rng`.
    fn due(&self, now: Instant, rng: &mut super::client::Rng) -> Instant {
        let mut due = now + self.delay;
        let mut rto = RTO_MIN;
        for _ in 0..RESENDS_MAX {
            if self.loss_pct == 0 || rng.between(1, 100) > self.loss_pct {
                break;
            }
            due += rto;
            rto *= 2;
        }
        due
    }
}

struct Shared {
    members: usize,
    /// `links[from * members + to]`.
    links: Mutex<Vec<Link>>,
    /// The process id of each member while it runs.
    pids: Mutex<Vec<Option<u32>>>,
    /// Bumped on every link change; pumps re-check their link when it moves.
    changed: watch::Sender<u64>,
    /// The private peer listener of each member.
    targets: Vec<SocketAddr>,
    stats: Stats,
    /// Seeds the loss draws of each connection direction.
    pumps: AtomicU64,
}

/// Connection counts of all proxies of a cluster.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    unidentified: AtomicU64,
    refused: AtomicU64,
    upstream_down: AtomicU64,
    forwarded: AtomicU64,
}

/// A snapshot of the proxies' connection counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Peer connections accepted.
    pub accepted: u64,
    /// Closed because no member process owned the connecting socket.
    pub unidentified: u64,
    /// Closed on accept because the link was cut ([`Cut::Drop`]).
    pub refused: u64,
    /// Closed because the member's peer listener did not accept (the member was down).
    pub upstream_down: u64,
    /// Forwarded to the member's peer listener.
    pub forwarded: u64,
}

impl Shared {
    fn link(&self, from: usize, to: usize) -> Link {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links[from * self.members + to]
    }
}

/// The proxies of one cluster. See the module invariants.
pub struct PeerNet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl PeerNet {
    /// Starts one proxy per member: `listeners[i]` (already bound) forwards to `targets[i]`.
    /// Must be called inside a Tokio runtime.
    pub fn start(listeners: Vec<StdListener>, targets: Vec<SocketAddr>) -> std::io::Result<Self> {
        let members = targets.len();
        let (changed, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            members,
            links: Mutex::new(vec![Link::default(); members * members]),
            pids: Mutex::new(vec![None; members]),
            changed,
            targets,
            stats: Stats::default(),
            pumps: AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        for (to, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            let shared = shared.clone();
            tasks.push(tokio::spawn(accept_loop(shared, to, listener)));
        }
        Ok(PeerNet { shared, tasks })
    }

    /// Records the process id of member `i` (`None` while it is down).
    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        let mut pids = self.shared.pids.lock().unwrap_or_else(|p| p.into_inner());
        pids[i] = pid;
    }

    /// Sets the directed link `from -> to`.
    pub fn set_link(&self, from: usize, to: usize, link: Link) {
        {
            let mut links = self.shared.links.lock().unwrap_or_else(|p| p.into_inner());
            links[from * self.shared.members + to] = link;
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Changes every link from and to `member` with `f`.
    fn update_member(&self, member: usize, f: impl Fn(&mut Link)) {
        for other in (0..self.shared.members).filter(|o| *o != member) {
            self.update(member, other, &f);
            self.update(other, member, &f);
        }
    }

    /// Changes every link of the cluster with `f`.
    fn update_all(&self, f: impl Fn(&mut Link)) {
        for from in 0..self.shared.members {
            for to in (0..self.shared.members).filter(|t| *t != from) {
                self.update(from, to, &f);
            }
        }
    }

    fn update(&self, from: usize, to: usize, f: impl Fn(&mut Link)) {
        let mut link = self.link(from, to);
        f(&mut link);
        self.set_link(from, to, link);
    }

    /// Cuts every link between `member` and the others in both directions.
    pub fn isolate(&self, member: usize, cut: Cut) {
        self.update_member(member, |l| l.cut = cut);
    }

    /// Cuts only what `member` sends to the others.
    pub fn cut_outbound(&self, member: usize, cut: Cut) {
        for other in (0..self.shared.members).filter(|o| *o != member) {
            self.update(member, other, |l| l.cut = cut);
        }
    }

    /// Cuts only what the others send to `member`.
    pub fn cut_inbound(&self, member: usize, cut: Cut) {
        for other in (0..self.shared.members).filter(|o| *o != member) {
            self.update(other, member, |l| l.cut = cut);
        }
    }

    /// Delays every link of the cluster.
    pub fn delay_all(&self, delay: Duration) {
        self.update_all(|l| l.delay = delay);
    }

    /// Delays every link from and to `member`.
    pub fn delay_member(&self, member: usize, delay: Duration) {
        self.update_member(member, |l| l.delay = delay);
    }

    /// Loses `pct` percent of the chunks on every link of the cluster.
    pub fn lose_all(&self, pct: u64) {
        self.update_all(|l| l.loss_pct = pct);
    }

    /// Loses `pct` percent of the chunks on every link from and to `member`.
    pub fn lose_member(&self, member: usize, pct: u64) {
        self.update_member(member, |l| l.loss_pct = pct);
    }

    /// Restores every link.
    pub fn heal(&self) {
        {
            let mut links = self.shared.links.lock().unwrap_or_else(|p| p.into_inner());
            links.iter_mut().for_each(|l| *l = Link::default());
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    pub fn link(&self, from: usize, to: usize) -> Link {
        self.shared.link(from, to)
    }

    pub fn stats(&self) -> NetStats {
        let s = &self.shared.stats;
        NetStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            unidentified: s.unidentified.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            upstream_down: s.upstream_down.load(Ordering::Relaxed),
            forwarded: s.forwarded.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, to: usize, listener: TcpListener) {
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(connection(shared.clone(), to, socket, peer));
    }
}

async fn connection(shared: Arc<Shared>, to: usize, socket: TcpStream, peer: SocketAddr) {
    shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
    let pids = shared
        .pids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut from = None;
    for _ in 0..IDENTIFY_ATTEMPTS {
        let pids = pids.clone();
        from = tokio::task::spawn_blocking(move || identify(peer, &pids))
            .await
            .ok()
            .flatten();
        if from.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some(from) = from else {
        shared.stats.unidentified.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if shared.link(from, to).cut == Cut::Drop || shared.link(to, from).cut == Cut::Drop {
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(upstream) = TcpStream::connect(shared.targets[to]).await else {
        shared.stats.upstream_down.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = socket.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = socket.into_split();
    let (up_read, up_write) = upstream.into_split();
    let forward = pump(shared.clone(), from, to, client_read, up_write);
    let backward = pump(shared.clone(), to, from, up_read, client_write);
    // Whichever direction ends first (EOF, error, a Drop cut) closes the whole connection.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
    }
}

/// Forwards one direction of a connection under the link `from -> to`.
async fn pump(
    shared: Arc<Shared>,
    from: usize,
    to: usize,
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let pump_no = shared.pumps.fetch_add(1, Ordering::Relaxed);
    let mut rng = super::client::Rng::new(pump_no.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let read_side = async move {
        let mut changed = shared.changed.subscribe();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = tokio::select! {
                res = reader.read(&mut buf) => match res {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                },
                res = changed.changed() => {
                    if res.is_err() || shared.link(from, to).cut == Cut::Drop {
                        return true;
                    }
                    continue;
                }
            };
            loop {
                match shared.link(from, to).cut {
                    Cut::None => break,
                    Cut::Drop => return true,
                    Cut::Stall => {
                        if changed.changed().await.is_err() {
                            return true;
                        }
                    }
                }
            }
            let due = shared.link(from, to).due(Instant::now(), &mut rng);
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return true;
            }
        }
    };
    let write_side = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::pin!(read_side, write_side);
    tokio::select! {
        aborted = &mut read_side => {
            if !aborted {
                // EOF: deliver what is in flight, then pass the EOF on.
                (&mut write_side).await;
            }
        }
        _ = &mut write_side => {}
    }
}

/// The member whose process owns the client end of a connection that came from `peer`.
fn identify(peer: SocketAddr, pids: &[Option<u32>]) -> Option<usize> {
    let inode = socket_inode(peer)?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().enumerate().find_map(|(i, pid)| {
        let pid = (*pid)?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|l| l.as_os_str() == wanted.as_str())
                    .unwrap_or(false)
            })
            .then_some(i)
    })
}

/// The inode of the TCP socket whose local address is `addr` (IPv4 only).
fn socket_inode(addr: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    // The kernel prints the address as the native-endian value of the network-order bytes.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&local.as_str()) {
            fields.get(9)?.parse().ok().filter(|inode| *inode != 0)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_inode_and_owner_of_a_local_socket() {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(socket_inode(peer).is_some());
        let me = std::process::id();
        assert_eq!(identify(peer, &[None, Some(me)]), Some(1));
        assert_eq!(identify(peer, &[None]), None);
    }

    #[test]
    fn a_lost_chunk_waits_for_its_resends() {
        let mut rng = super::super::client::Rng::new(7);
        let now = Instant::now();
        let delay = Duration::from_millis(30);
        let clean = Link {
            delay,
            ..Link::default()
        };
        assert_eq!(clean.due(now, &mut rng), now + delay);
        // Every resend lost too: the doublings stop after RESENDS_MAX (200+400+800+1600 ms).
        let lossy = Link {
            loss_pct: 100,
            ..clean
        };
        assert_eq!(lossy.due(now, &mut rng), now + delay + RTO_MIN * 15);
        // At 30 %, most chunks pass at once and some wait one or more timeouts.
        let waits: Vec<Duration> = (0..1_000)
            .map(|_| {
                Link {
                    loss_pct: 30,
                    ..clean
                }
                .due(now, &mut rng)
                    - now
                    - delay
            })
            .collect();
        let lost = waits.iter().filter(|w| !w.is_zero()).count();
        assert!((200..400).contains(&lost), "{lost} of 1000 lost at 30 %");
        assert!(waits
            .iter()
            .all(|w| [0, 1, 3, 7, 15].map(|n| RTO_MIN * n).contains(w)));
        assert!(waits.contains(&(RTO_MIN * 3)));
    }

    async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf));
        read.await.expect("bytes in time").expect("a read");
        buf
    }

    /// The connection from this process to member 1's proxy counts as member 0's (its pid):
    /// bytes pass, a stall holds them and releases them in order, a drop closes the connection
    /// and refuses new ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_forward_stall_and_drop() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upstream.local_addr().unwrap();
        let proxies = vec![
            StdListener::bind("127.0.0.1:0").unwrap(),
            StdListener::bind("127.0.0.1:0").unwrap(),
        ];
        let proxy1 = proxies[1].local_addr().unwrap();
        let unused = SocketAddr::from(([127, 0, 0, 1], 9));
        let net = PeerNet::start(proxies, vec![unused, target]).unwrap();
        net.set_pid(0, Some(std::process::id()));

        let mut client = TcpStream::connect(proxy1).await.unwrap();
        let (mut server, _) = upstream.accept().await.unwrap();
        client.write_all(b"a").await.unwrap();
        assert_eq!(read_exact(&mut server, 1).await, b"a");
        server.write_all(b"z").await.unwrap();
        assert_eq!(read_exact(&mut client, 1).await, b"z");

        net.cut_outbound(0, Cut::Stall);
        client.write_all(b"b").await.unwrap();
        let mut one = [0u8; 1];
        let held = tokio::time::timeout(Duration::from_millis(300), server.read(&mut one)).await;
        assert!(held.is_err(), "a stalled link passed bytes: {held:?}");
        // The other direction of the same connection still works.
        server.write_all(b"y").await.unwrap();
        assert_eq!(read_exact(&mut client, 1).await, b"y");
        net.heal();
        client.write_all(b"c").await.unwrap();
        assert_eq!(read_exact(&mut server, 2).await, b"bc");

        net.isolate(1, Cut::Drop);
        let closed = tokio::time::timeout(Duration::from_secs(10), client.read(&mut one)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a dropped link kept its connection: {closed:?}"
        );
        let mut refused = TcpStream::connect(proxy1).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut one)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a dropped link accepted a connection: {closed:?}"
        );
        assert!(net.stats().refused >= 1 && net.stats().forwarded == 1);
    }
}
