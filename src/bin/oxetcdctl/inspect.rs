//! `inspect DATA_DIR [--records]`: an offline, read-only look at an oxetcd data dir's WAL
//! segments and snapshot files, for debugging: per segment its header, its records (kinds,
//! index and term ranges) and how it ends (clean, a torn tail, or damage), and per snapshot its
//! term, index, size and checksum status. Damage is named by file and byte offset.
//!
//! Invariant: nothing here writes; a torn tail is reported, never repaired (the server repairs
//! one on open, in the last segment only). The exit code is 1 when anything is damaged (a torn
//! tail outside the last segment counts as damage, as the server treats it).

use std::path::{Path, PathBuf};

use clap::Args;

use oxetcd::snap::{parse_snap_name, SnapHeader};
use oxetcd::wal::format::Record;
use oxetcd::wal::{parse_segment_name, scan_segment, ScanEnd};

use super::CtlError;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// the data dir (the one given to oxetcd as --data-dir)
    data_dir: PathBuf,
    /// the WAL directory, when the member runs with --wal-dir (default DATA_DIR/member/wal)
    #[arg(long = "wal-dir")]
    wal_dir: Option<PathBuf>,
    /// print every record of every segment (offset, kind, index, term, size)
    #[arg(long)]
    records: bool,
    /// the largest record body accepted, in bytes (the server's default)
    #[arg(long = "record-bytes-max", default_value_t = 16 * 1024 * 1024)]
    record_bytes_max: u32,
}

fn sorted_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, CtlError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CtlError::io(format!("reading {}: {e}", dir.display()))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CtlError::io(format!("reading {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|e| CtlError::io(format!("reading {}: {e}", path.display())))
}

/// The report of one segment and whether it is damaged.
fn segment_report(path: &Path, bytes: &[u8], last: bool, a: &InspectArgs) -> (String, bool) {
    let name = path.display();
    let scan = match scan_segment(bytes, a.record_bytes_max) {
        Ok(scan) => scan,
        Err((offset, reason)) => {
            return (
                format!("{name}: CORRUPT at offset {offset}: {reason}\n"),
                true,
            );
        }
    };
    let mut out = format!(
        "{name}: segment seq {}, first index {}, {} bytes\n",
        scan.header.seq,
        scan.header.first_index,
        bytes.len()
    );
    let (mut entries, mut votes, mut commits, mut truncates, mut purges) = (0, 0, 0, 0, 0);
    let mut indexes: Option<(u64, u64)> = None;
    let mut terms: Option<(u64, u64)> = None;
    for r in &scan.records {
        let line = match r.record {
            Record::Entry {
                index,
                term,
                payload,
            } => {
                entries += 1;
                indexes =
                    Some(indexes.map_or((index, index), |(lo, hi)| (lo.min(index), hi.max(index))));
                terms = Some(terms.map_or((term, term), |(lo, hi)| (lo.min(term), hi.max(term))));
                format!("entry index {index} term {term}, {} bytes", payload.len())
            }
            Record::Vote(v) => {
                votes += 1;
                format!("vote, {} bytes", v.len())
            }
            Record::Committed(c) => {
                commits += 1;
                format!("committed marker, {} bytes", c.len())
            }
            Record::Truncate { index } => {
                truncates += 1;
                format!("truncate from index {index}")
            }
            Record::Purge { index, marker } => {
                purges += 1;
                format!("purge up to index {index}, marker {} bytes", marker.len())
            }
        };
        if a.records {
            out.push_str(&format!("  {:>10}  {line}\n", r.offset));
        }
    }
    let range =
        |r: Option<(u64, u64)>| r.map_or("-".to_string(), |(lo, hi)| format!("{lo}..={hi}"));
    out.push_str(&format!(
        "  {entries} entries (index {}, term {}), {votes} votes, {commits} committed markers, \
         {truncates} truncates, {purges} purges\n",
        range(indexes),
        range(terms)
    ));
    let damaged = match &scan.end {
        ScanEnd::Clean { offset } => {
            out.push_str(&format!("  ends cleanly at offset {offset}\n"));
            false
        }
        ScanEnd::Torn { offset } if last => {
            out.push_str(&format!(
                "  torn tail at offset {offset}: an interrupted write, cut off when the server \
                 next opens the log\n"
            ));
            false
        }
        ScanEnd::Torn { offset } => {
            out.push_str(&format!(
                "  CORRUPT at offset {offset}: a torn write in a segment that is not the last\n"
            ));
            true
        }
        ScanEnd::Corrupt { offset, reason } => {
            out.push_str(&format!("  CORRUPT at offset {offset}: {reason}\n"));
            true
        }
    };
    (out, damaged)
}

fn snapshot_report(path: &Path, bytes: &[u8]) -> (String, bool) {
    let name = path.display();
    match SnapHeader::validate(bytes) {
        Ok(h) => (
            format!(
                "{name}: snapshot term {} index {}, {} data bytes, checksum {:#010x} ok\n",
                h.term, h.index, h.data_bytes, h.data_crc
            ),
            false,
        ),
        Err((offset, reason)) => (
            format!("{name}: CORRUPT at offset {offset}: {reason}\n"),
            true,
        ),
    }
}

pub fn inspect(a: &InspectArgs) -> Result<(), CtlError> {
    let member = a.data_dir.join("member");
    if !member.is_dir() {
        return Err(CtlError::invalid_input(format!(
            "{} is not an oxetcd data dir (no member/ directory)",
            a.data_dir.display()
        )));
    }
    let mut damaged = false;
    let wal_dir = a.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    let segments = sorted_files(&wal_dir, |n| parse_segment_name(n).is_some())?;
    if segments.is_empty() {
        println!("{}: no WAL segments", wal_dir.display());
    }
    for (i, path) in segments.iter().enumerate() {
        let bytes = read(path)?;
        let (report, bad) = segment_report(path, &bytes, i + 1 == segments.len(), a);
        print!("{report}");
        damaged |= bad;
    }
    let snapshots = sorted_files(&member.join("snap"), |n| parse_snap_name(n).is_some())?;
    for path in &snapshots {
        let bytes = read(path)?;
        let (report, bad) = snapshot_report(path, &bytes);
        print!("{report}");
        damaged |= bad;
    }
    if damaged {
        return Err(CtlError::general(
            "the data dir is damaged (see CORRUPT above)",
        ));
    }
    Ok(())
}
