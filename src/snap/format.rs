//! The snapshot file format. Pure encoding and validation, no I/O.
//!
//! ```text
//! snap_file := header data
//! header    := magic:[u8;8]="OXETCDSN" version:u32=1 data_crc:u32 term:u64 index:u64
//!              data_bytes:u64 header_crc:u32 zero:u32                 ; 48 bytes
//!              data_crc   = crc32(data)
//!              header_crc = crc32(header[0..40])
//! data      := byte{data_bytes}                                        ; the file ends here
//! ```
//! All integers are little-endian. The file is named `{term:016x}-{index:016x}.snap`; the name
//! and the header must agree.
//!
//! Invariant: validation never allocates; `data_bytes` is compared with the real file length
//! before any slicing.

use crate::io::le::{u32_at, u64_at};
use std::fmt;

pub const SNAP_MAGIC: [u8; 8] = *b"OXETCDSN";
pub const SNAP_VERSION: u32 = 1;
pub const SNAP_HEADER_BYTES: u64 = 48;
/// Offset of the data, named in data checksum errors.
pub const DATA_OFFSET: u64 = SNAP_HEADER_BYTES;

/// Why a snapshot file is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapCorruptReason {
    ShortHeader {
        file_bytes: u64,
    },
    BadMagic,
    UnsupportedVersion {
        version: u32,
    },
    HeaderChecksum,
    NameMismatch {
        name_term: u64,
        name_index: u64,
        term: u64,
        index: u64,
    },
    LengthMismatch {
        data_bytes: u64,
        file_bytes: u64,
    },
    DataChecksum {
        expected: u32,
        actual: u32,
    },
}

impl fmt::Display for SnapCorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapCorruptReason::*;
        match self {
            ShortHeader { file_bytes } => {
                write!(
                    f,
                    "file of {file_bytes} bytes is shorter than a snapshot header"
                )
            }
            BadMagic => write!(f, "bad snapshot magic"),
            UnsupportedVersion { version } => write!(f, "unsupported snapshot version {version}"),
            HeaderChecksum => write!(f, "snapshot header checksum mismatch"),
            NameMismatch {
                name_term,
                name_index,
                term,
                index,
            } => write!(
                f,
                "file name says term {name_term} index {name_index}, header says term {term} \
                 index {index}"
            ),
            LengthMismatch {
                data_bytes,
                file_bytes,
            } => write!(
                f,
                "header announces {data_bytes} data bytes but the file has {file_bytes} bytes"
            ),
            DataChecksum { expected, actual } => write!(
                f,
                "snapshot data checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
        }
    }
}

/// The identity of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapHeader {
    pub term: u64,
    pub index: u64,
    pub data_bytes: u64,
    pub data_crc: u32,
}

impl SnapHeader {
    pub fn for_data(term: u64, index: u64, data: &[u8]) -> SnapHeader {
        SnapHeader {
            term,
            index,
            data_bytes: data.len() as u64,
            data_crc: crc32fast::hash(data),
        }
    }

    pub fn encode(&self) -> [u8; SNAP_HEADER_BYTES as usize] {
        let mut out = [0u8; SNAP_HEADER_BYTES as usize];
        out[0..8].copy_from_slice(&SNAP_MAGIC);
        out[8..12].copy_from_slice(&SNAP_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.data_crc.to_le_bytes());
        out[16..24].copy_from_slice(&self.term.to_le_bytes());
        out[24..32].copy_from_slice(&self.index.to_le_bytes());
        out[32..40].copy_from_slice(&self.data_bytes.to_le_bytes());
        let crc = crc32fast::hash(&out[0..40]);
        out[40..44].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Validates a whole file and returns its header; on failure, the offset and reason.
    pub fn validate(file: &[u8]) -> Result<SnapHeader, (u64, SnapCorruptReason)> {
        let Some(head) = file.get(..SNAP_HEADER_BYTES as usize) else {
            let file_bytes = file.len() as u64;
            return Err((0, SnapCorruptReason::ShortHeader { file_bytes }));
        };
        let header = SnapHeader::validate_head(head, file.len() as u64)?;
        header.check_data_crc(crc32fast::hash(&file[SNAP_HEADER_BYTES as usize..]))?;
        Ok(header)
    }

    /// Validates the first [`SNAP_HEADER_BYTES`] of a file of `file_bytes` bytes: everything
    /// but the data checksum, which the caller computes (see [`SnapHeader::check_data_crc`]).
    pub fn validate_head(
        head: &[u8],
        file_bytes: u64,
    ) -> Result<SnapHeader, (u64, SnapCorruptReason)> {
        let Some(head) = head.get(..SNAP_HEADER_BYTES as usize) else {
            return Err((0, SnapCorruptReason::ShortHeader { file_bytes }));
        };
        if head[0..8] != SNAP_MAGIC {
            return Err((0, SnapCorruptReason::BadMagic));
        }
        let version = u32_at(head, 8);
        if version != SNAP_VERSION {
            return Err((0, SnapCorruptReason::UnsupportedVersion { version }));
        }
        if u32_at(head, 40) != crc32fast::hash(&head[0..40]) || u32_at(head, 44) != 0 {
            return Err((0, SnapCorruptReason::HeaderChecksum));
        }
        let header = SnapHeader {
            data_crc: u32_at(head, 12),
            term: u64_at(head, 16),
            index: u64_at(head, 24),
            data_bytes: u64_at(head, 32),
        };
        if SNAP_HEADER_BYTES.checked_add(header.data_bytes) != Some(file_bytes) {
            return Err((
                32,
                SnapCorruptReason::LengthMismatch {
                    data_bytes: header.data_bytes,
                    file_bytes,
                },
            ));
        }
        Ok(header)
    }

    /// Compares the checksum computed over the whole data with the stored one.
    pub fn check_data_crc(&self, actual: u32) -> Result<(), (u64, SnapCorruptReason)> {
        if actual != self.data_crc {
            let expected = self.data_crc;
            return Err((
                DATA_OFFSET,
                SnapCorruptReason::DataChecksum { expected, actual },
            ));
        }
        Ok(())
    }
}

pub fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// Parses `{term:016x}-{index:016x}.snap`.
pub fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(term, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> Vec<u8> {
        let mut out = SnapHeader::for_data(3, 99, data).encode().to_vec();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn valid_file_round_trips() {
        let bytes = file(b"state machine image");
        let header = SnapHeader::validate(&bytes).unwrap();
        assert_eq!((header.term, header.index, header.data_bytes), (3, 99, 19));
        assert!(SnapHeader::validate(&file(b"")).is_ok());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = file(b"0123456789abcdef");
        for pos in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[pos] ^= 1 << bit;
                let (offset, _) = SnapHeader::validate(&bad).unwrap_err();
                assert!(offset <= pos as u64, "pos {pos}");
            }
        }
    }

    #[test]
    fn truncation_and_forged_lengths_are_detected() {
        let bytes = file(b"abcdef");
        assert!(matches!(
            SnapHeader::validate(&bytes[..bytes.len() - 1]),
            Err((32, SnapCorruptReason::LengthMismatch { .. }))
        ));
        assert!(matches!(
            SnapHeader::validate(&bytes[..10]),
            Err((0, SnapCorruptReason::ShortHeader { file_bytes: 10 }))
        ));
        let mut forged = SnapHeader {
            term: 1,
            index: 1,
            data_bytes: u64::MAX,
            data_crc: 0,
        }
        .encode()
        .to_vec();
        forged.extend_from_slice(b"x");
        assert!(matches!(
            SnapHeader::validate(&forged),
            Err((32, SnapCorruptReason::LengthMismatch { .. }))
        ));
    }

    // Changing these bytes changes the on-disk format: bump the version and keep a decoder for
    // the old one.
    const SNAP_FILE_V1: &str = "
        4f 58 45 54 43 44 53 4e     # magic \"OXETCDSN\"
        01 00 00 00                 # version 1
        5f 04 3d c5                 # data_crc = crc32(data)
        03 00 00 00 00 00 00 00     # term 3
        63 00 00 00 00 00 00 00     # index 99
        05 00 00 00 00 00 00 00     # data_bytes 5
        be 9d 71 2e                 # header_crc = crc32(bytes 0..40)
        00 00 00 00                 # zero
        69 6d 61 67 65              # data \"image\" (the snapshot image, opaque here)
    ";

    #[test]
    fn file_bytes_are_fixed() {
        let bytes = file(b"image");
        crate::golden::assert_golden("snapshot file", &bytes, SNAP_FILE_V1);
        let header = SnapHeader::validate(&bytes).unwrap();
        assert_eq!((header.term, header.index, header.data_bytes), (3, 99, 5));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(snap_name(2, 0x10), "0000000000000002-0000000000000010.snap");
        assert_eq!(parse_snap_name(&snap_name(2, 0x10)), Some((2, 0x10)));
        assert_eq!(parse_snap_name("2-10.snap"), None);
        assert_eq!(
            parse_snap_name(&format!("{}.tmp", snap_name(2, 0x10))),
            None
        );
    }
}
