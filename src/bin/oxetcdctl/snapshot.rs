//! `snapshot status` and `snapshot restore` on etcd-format snapshot files.
//!
//! A snapshot file is an etcd backend (bbolt) file followed by the sha256 of it, 32 bytes; a
//! file whose length is 32 more than a multiple of 512 is taken to carry that trailer, as
//! etcdutl does. `status` reads the file as it is (bbolt ignores the trailer); `restore`
//! verifies the trailer first (unless `--skip-hash-check`, for a `member/snap/db` copied out
//! of a data dir), then checks the whole file's structure before importing anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxetcd::bbolt::{check, Db, Value};
use oxetcd::config::{BootstrapCluster, Config, Url};
use oxetcd::io::os::OsDisk;
use oxetcd::io::{Disk, FileBytes, OpenOptions};
use oxetcd::raft::MemberNode;
use sha2::{Digest, Sha256};

use super::args::parse;

/// Length of the sha256 trailer.
const HASH_BYTES: usize = 32;

pub fn run(argv: &[String]) -> Result<(), String> {
    match argv.first().map(String::as_str) {
        Some("status") => status(&argv[1..]),
        Some("restore") => restore(&argv[1..]),
        Some("save") => Err(
            "snapshot save needs a running server: use etcdctl snapshot save, which works \
             against oxetcd unchanged"
                .into(),
        ),
        Some(other) => Err(format!("unknown snapshot command {other:?}")),
        None => Err("snapshot needs a command: status or restore".into()),
    }
}

fn one_file(positional: &[String], command: &str) -> Result<PathBuf, String> {
    match positional {
        [file] => Ok(PathBuf::from(file)),
        _ => Err(format!("snapshot {command} requires exactly one argument")),
    }
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

fn status(argv: &[String]) -> Result<(), String> {
    let parsed = parse(argv, &[("write-out", &["w"])], &[])?;
    let path = one_file(&parsed.positional, "status")?;
    let bytes = read_file(&path)?;
    let status = read_status(&bytes)?;
    match parsed.value("write-out").unwrap_or("simple") {
        "json" => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            status.hash, status.revision, status.total_key, status.total_size
        ),
        "table" => print!("{}", table(&status)),
        "simple" => println!(
            "{:x}, {}, {}, {}",
            status.hash,
            status.revision,
            status.total_key,
            human_bytes(status.total_size)
        ),
        other => return Err(format!("unsupported output format {other:?}")),
    }
    Ok(())
}

/// etcdutl's table: right-aligned cells, centred headers.
fn table(status: &Status) -> String {
    let headers = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let cells = [
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_key.to_string(),
        human_bytes(status.total_size),
    ];
    let widths: Vec<usize> = headers
        .iter()
        .zip(&cells)
        .map(|(h, c)| h.len().max(c.len()))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let header: String = headers
        .iter()
        .zip(&widths)
        .map(|(h, w)| {
            let gap = w - h.len();
            format!("| {}{h}{} ", " ".repeat(gap / 2), " ".repeat(gap - gap / 2))
        })
        .collect::<String>()
        + "|\n";
    let row: String = cells
        .iter()
        .zip(&widths)
        .map(|(c, w)| format!("| {c:>w$} "))
        .collect::<String>()
        + "|\n";
    format!("{rule}{header}{rule}{row}{rule}")
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
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
fn restore_cluster(parsed: &super::args::Parsed) -> Result<BootstrapCluster, String> {
    let mut config = Config {
        name: parsed.value("name").unwrap_or("default").to_string(),
        initial_cluster: parsed
            .value("initial-cluster")
            .unwrap_or("default=http://localhost:2380")
            .to_string(),
        initial_cluster_token: parsed
            .value("initial-cluster-token")
            .unwrap_or("etcd-cluster")
            .to_string(),
        ..Config::default()
    };
    let advertised = parsed
        .value("initial-advertise-peer-urls")
        .unwrap_or("http://localhost:2380");
    config.initial_advertise_peer_urls = advertised
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

fn restore(argv: &[String]) -> Result<(), String> {
    let valued: &[(&'static str, &[&str])] = &[
        ("data-dir", &[]),
        ("name", &[]),
        ("initial-cluster", &[]),
        ("initial-cluster-token", &[]),
        ("initial-advertise-peer-urls", &[]),
    ];
    let parsed = parse(argv, valued, &["skip-hash-check"])?;
    let path = one_file(&parsed.positional, "restore")?;
    let name = parsed.value("name").unwrap_or("default");
    let data_dir = PathBuf::from(
        parsed
            .value("data-dir")
            .map_or_else(|| format!("{name}.etcd"), str::to_string),
    );
    let boot = restore_cluster(&parsed)?;
    let disk: Arc<dyn Disk> = Arc::new(OsDisk::new());
    require_empty_dir(disk.as_ref(), &data_dir)?;

    let bytes = read_file(&path)?;
    let db_bytes = verified_db(&bytes, parsed.switch("skip-hash-check"))?;
    let db = Db::open(db_bytes).map_err(|e| e.to_string())?;
    check(&db).map_err(|e| format!("snapshot file integrity check failed: {e}"))?;
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
    oxetcd::raft::seed::seed_data_dir(
        disk,
        &data_dir,
        boot.local_member_id,
        boot.cluster_id,
        &members,
        imported.state,
    )
    .map_err(|e| e.to_string())?;
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

    #[test]
    fn sizes_print_as_go_humanize_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(2_101_248), "2.1 MB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
