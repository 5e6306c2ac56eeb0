//! `snapshot save` (online: a member's backend streamed into a file, as etcdctl saves it) and
//! `snapshot status` / `snapshot restore` (offline, etcdutl's) on etcd-format snapshot files.
//! Save and restore show progress on stderr when stdout is a terminal, and nothing else.
//!
//! A snapshot file is an etcd backend (bbolt) file followed by the sha256 of it, 32 bytes; a
//! file whose length is 32 more than a multiple of 512 is taken to carry that trailer, as
//! etcdutl does. `status` reads the file as it is (bbolt ignores the trailer); `restore`
//! verifies the trailer first (unless `--skip-hash-check`, for a `member/snap/db` copied out
//! of a data dir), then checks the whole file's structure before importing anything.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use oxetcd::bbolt::{check, Db, Value};
use oxetcd::config::{BootstrapCluster, Config, Url};
use oxetcd::io::os::OsDisk;
use oxetcd::io::{Disk, FileBytes, OpenOptions};
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::SnapshotRequest;
use oxetcd::raft::MemberNode;
use sha2::{Digest, Sha256};

use super::client::{Client, Global};
use super::print::{self, Format};
use super::CtlError;

/// Length of the sha256 trailer.
const HASH_BYTES: usize = 32;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        #[arg(value_name = "FILENAME")]
        args: Vec<PathBuf>,
    },
    /// Gets backend snapshot status of a given file
    Status {
        #[arg(value_name = "FILENAME")]
        args: Vec<PathBuf>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    filename: PathBuf,
    /// Path to the output data directory
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Path to the WAL directory (use --data-dir if none given); the member must then be
    /// started with the same --wal-dir
    #[arg(long = "wal-dir")]
    wal_dir: Option<PathBuf>,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    name: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    initial_advertise_peer_urls: String,
    /// Ignore snapshot hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check")]
    skip_hash_check: bool,
}

pub async fn run(g: &Global, command: SnapshotCommand) -> Result<(), CtlError> {
    match command {
        SnapshotCommand::Save { args } => match args.as_slice() {
            [file] => save(g, file).await,
            _ => Err(CtlError::bad_args("snapshot save expects one argument")),
        },
        SnapshotCommand::Status { args } => match args.as_slice() {
            [file] => status(g, file).map_err(CtlError::general),
            _ => Err(CtlError::bad_args(
                "snapshot status requires exactly one argument",
            )),
        },
        SnapshotCommand::Restore(args) => restore(&args).map_err(CtlError::general),
    }
}

/// A progress bar on stderr for `total` bytes, drawn only when stdout is a terminal (scripts
/// get nothing but the result).
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// A spinner naming the current step of a long offline command, on the same terms as
/// [`progress_bar`].
pub fn progress_steps() -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let spinner =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

/// `snapshot save`: streams one member's backend into `FILE.part`, checks the sha256 trailer's
/// framing, syncs, and renames it to `FILE` (a crash leaves no half file under the name).
async fn save(g: &Global, path: &Path) -> Result<(), CtlError> {
    if g.endpoints.len() != 1 {
        return Err(CtlError::bad_args(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            g.endpoints.join(" ")
        )));
    }
    // As etcdctl: a save that cannot reach its member or breaks off is "interrupted" (exit 5).
    let interrupted = |e: CtlError| CtlError {
        code: crate::exit::INTERRUPTED,
        ..e
    };
    let client = Client::connect(g).await.map_err(interrupted)?;
    let part = PathBuf::from(format!("{}.part", path.display()));
    let mut file = std::fs::File::create(&part)
        .map_err(|e| CtlError::io(format!("could not open {} ({e})", part.display())))?;
    let written = fetch_into(g, &client, &mut file).await;
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(interrupted(e));
        }
    };
    if written % 512 != HASH_BYTES as u64 {
        let _ = std::fs::remove_file(&part);
        return Err(CtlError::general(format!(
            "sha256 checksum not found [bytes: {written}]"
        )));
    }
    file.sync_all()
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|e| CtlError::io(format!("could not save {} ({e})", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    println!("Snapshot saved at {}", path.display());
    Ok(())
}

/// Copies the snapshot stream into `file`; the byte count written. The stream has no overall
/// deadline (a large database takes long) but every message must arrive within
/// `--command-timeout` of the previous one.
async fn fetch_into(
    g: &Global,
    client: &Client,
    file: &mut std::fs::File,
) -> Result<u64, CtlError> {
    let opened = MaintenanceClient::new(client.channel.clone())
        .snapshot(client.request(SnapshotRequest {}))
        .await;
    let mut stream = match opened {
        Ok(stream) => stream.into_inner(),
        Err(status) => return Err(client.status_error(&status).await),
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut written = 0u64;
    loop {
        let next = tokio::time::timeout(g.command_timeout, stream.message())
            .await
            .map_err(|_| CtlError::general("context deadline exceeded"))?
            .map_err(|s| CtlError::from_status(&s))?;
        let Some(chunk) = next else { break };
        let blob_len = chunk.blob.len() as u64;
        let bar = bar.get_or_insert_with(|| {
            progress_bar(written + blob_len + chunk.remaining_bytes, "saving")
        });
        file.write_all(&chunk.blob)
            .map_err(|e| CtlError::io(format!("writing the snapshot: {e}")))?;
        written += blob_len;
        // The sha256 trailer can come after the last chunk that counted it.
        if bar.length().is_some_and(|total| written > total) {
            bar.set_length(written);
        }
        bar.set_position(written);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(written)
}

fn read_file(path: &Path) -> Result<FileBytes, String> {
    OsDisk::new()
        .open(path, OpenOptions::read_only())
        .and_then(|f| f.read_all())
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// What etcdutl's `snapshot status` reports.
struct Status {
    hash: u32,
    revision: i64,
    total_key: u64,
    total_size: u64,
}

fn read_status(bytes: &[u8]) -> Result<Status, String> {
    let db = Db::open(bytes).map_err(|e| e.to_string())?;
    check(&db).map_err(|e| format!("snapshot file integrity check failed: {e}"))?;
    let mut hash = Crc32c::new();
    let mut total_key = 0u64;
    let mut revision = 0i64;
    for bucket in db.root().entries() {
        let bucket = bucket.map_err(|e| e.to_string())?;
        hash.update(bucket.key);
        let Value::Bucket(contents) = bucket.value else {
            continue;
        };
        let mut last_key: Option<&[u8]> = None;
        for entry in contents.entries() {
            let entry = entry.map_err(|e| e.to_string())?;
            hash.update(entry.key);
            if let Value::Data(value) = entry.value {
                hash.update(value);
            }
            total_key += 1;
            last_key = Some(entry.key);
        }
        if bucket.key == b"key" {
            if let Some(key) = last_key {
                revision = oxetcd::backend::decode_revision(key)
                    .map(|(main, _, _)| main)
                    .ok_or_else(|| format!("key bucket key {key:02x?} is not a revision"))?;
            }
        }
    }
    Ok(Status {
        hash: hash.finish(),
        revision,
        total_key,
        total_size: db.size_bytes(),
    })
}

fn status(g: &Global, path: &Path) -> Result<(), String> {
    let bytes = read_file(path)?;
    let status = read_status(&bytes)?;
    let cells = [
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_key.to_string(),
        print::human_bytes(status.total_size),
    ];
    match g.write_out {
        Format::Json => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            status.hash, status.revision, status.total_key, status.total_size
        ),
        Format::Table => print!(
            "{}",
            print::table(
                &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                &[cells.to_vec()]
            )
        ),
        Format::Simple => println!("{}", cells.join(", ")),
        other => return Err(format!("{} not supported as output format", other.name())),
    }
    Ok(())
}

/// CRC-32 with the Castagnoli polynomial (what etcdutl hashes a snapshot's contents with).
struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Crc32c {
    fn new() -> Self {
        const POLY_REVERSED: u32 = 0x82F6_3B78;
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ POLY_REVERSED
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Crc32c { table, crc: !0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.crc = self.table[((self.crc ^ u32::from(b)) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }

    fn finish(&self) -> u32 {
        !self.crc
    }
}

/// The db part of a snapshot file, after the trailer check.
fn verified_db(bytes: &[u8], skip_hash_check: bool) -> Result<&[u8], String> {
    let has_hash = bytes.len() % 512 == HASH_BYTES;
    if !has_hash {
        if !skip_hash_check {
            return Err("snapshot missing hash but --skip-hash-check=false".into());
        }
        return Ok(bytes);
    }
    let (db, trailer) = bytes.split_at(bytes.len() - HASH_BYTES);
    if !skip_hash_check {
        let computed = Sha256::digest(db);
        if computed.as_slice() != trailer {
            return Err(format!(
                "expected sha256 {}, got {}",
                hex(trailer),
                hex(&computed)
            ));
        }
    }
    Ok(db)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The new cluster a restore builds, from etcd's bootstrap flags (etcdutl's defaults).
fn restore_cluster(a: &RestoreArgs) -> Result<BootstrapCluster, String> {
    let mut config = Config {
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        ..Config::default()
    };
    config.initial_advertise_peer_urls = a
        .initial_advertise_peer_urls
        .split(',')
        .map(Url::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--initial-advertise-peer-urls: {e}"))?;
    config.bootstrap_cluster().map_err(|e| e.to_string())
}

/// Refuses a data dir that exists and holds anything (etcdutl 3.5's rule).
fn require_empty_dir(disk: &dyn Disk, data_dir: &Path) -> Result<(), String> {
    let occupied = disk
        .exists(data_dir)
        .and_then(|exists| Ok(exists && !disk.list(data_dir)?.is_empty()));
    if !matches!(occupied, Ok(false)) {
        return Err(format!(
            "data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        ));
    }
    Ok(())
}

fn restore(a: &RestoreArgs) -> Result<(), String> {
    let path = &a.filename;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name)));
    let boot = restore_cluster(a)?;
    let disk: Arc<dyn Disk> = Arc::new(OsDisk::new());
    require_empty_dir(disk.as_ref(), &data_dir)?;
    if let Some(wal_dir) = &a.wal_dir {
        require_empty_dir(disk.as_ref(), wal_dir)?;
    }

    let steps = progress_steps();
    steps.set_message("verifying the snapshot");
    let bytes = read_file(path)?;
    let db_bytes = verified_db(&bytes, a.skip_hash_check)?;
    let db = Db::open(db_bytes).map_err(|e| e.to_string())?;
    check(&db).map_err(|e| format!("snapshot file integrity check failed: {e}"))?;
    steps.set_message("importing keys and leases");
    let imported = oxetcd::backend::import(&db).map_err(|e| e.to_string())?;
    let revision = imported.state.kv.current_revision();
    let members: Vec<(u64, MemberNode)> = boot
        .members
        .iter()
        .map(|m| {
            let node = MemberNode {
                name: m.name.clone(),
                peer_urls: m.peer_urls.iter().map(ToString::to_string).collect(),
                client_urls: Vec::new(),
            };
            (m.id, node)
        })
        .collect();
    steps.set_message("writing the data dir");
    oxetcd::raft::seed::seed_data_dir(
        disk.clone(),
        &data_dir,
        boot.local_member_id,
        boot.cluster_id,
        &members,
        imported.state,
    )
    .map_err(|e| e.to_string())?;
    // The member's log starts empty after a restore; a dedicated WAL directory only has to
    // exist (the member writes its first segment there when it starts).
    if let Some(wal_dir) = &a.wal_dir {
        disk.create_dir_all(wal_dir)
            .map_err(|e| format!("creating {}: {e}", wal_dir.display()))?;
    }
    steps.finish_and_clear();
    println!(
        "restored snapshot {} to {} (revision {revision}, {} records; member {:x}, cluster {:x})",
        path.display(),
        data_dir.display(),
        imported.records,
        boot.local_member_id,
        boot.cluster_id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut crc = Crc32c::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xE306_9283);
    }
}
