//! Key permissions and the coverage rule etcd applies to them.
//!
//! A permission grants READ, WRITE or both on `[key, range_end)` with the Range conventions:
//! an empty `range_end` is the one key `key`, `range_end == "\0"` is every key from `key` on
//! (and `key == "\0"` with it is every key). A request is allowed when the union of the user's
//! matching permissions covers its whole range: `get a c` needs `[a, c)` covered, which
//! `[a, b)` plus `[b, c)` do and `[a, b)` alone does not.

use serde::{Deserialize, Serialize};

use crate::proto::authpb;

/// What a permission grants (authpb's numbering: READ 0, WRITE 1, READWRITE 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    /// The protocol value; anything unknown is refused by the caller.
    pub fn from_proto(value: i32) -> Option<PermType> {
        match authpb::permission::Type::try_from(value).ok()? {
            authpb::permission::Type::Read => Some(PermType::Read),
            authpb::permission::Type::Write => Some(PermType::Write),
            authpb::permission::Type::Readwrite => Some(PermType::ReadWrite),
        }
    }

    pub fn to_proto(self) -> i32 {
        match self {
            PermType::Read => authpb::permission::Type::Read as i32,
            PermType::Write => authpb::permission::Type::Write as i32,
            PermType::ReadWrite => authpb::permission::Type::Readwrite as i32,
        }
    }

    /// Whether a permission of this type satisfies a need of `need` (Read or Write).
    pub fn allows(self, need: PermType) -> bool {
        self == PermType::ReadWrite || self == need
    }
}

/// One key permission of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub perm_type: PermType,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl Permission {
    pub fn to_proto(&self) -> authpb::Permission {
        authpb::Permission {
            perm_type: self.perm_type.to_proto(),
            key: self.key.clone(),
            range_end: self.range_end.clone(),
        }
    }
}

/// The end of an interval: a key (exclusive) or past every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinite,
}

/// `[key, range_end)` as a half-open interval of keys.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    if range_end.is_empty() {
        let mut next = key.to_vec();
        next.push(0);
        (key.to_vec(), End::Key(next))
    } else if range_end == [0] {
        (key.to_vec(), End::Infinite)
    } else {
        (key.to_vec(), End::Key(range_end.to_vec()))
    }
}

/// Whether the union of `granted` covers the whole request range `[key, range_end)`.
pub fn covers<'a>(
    granted: impl Iterator<Item = &'a Permission>,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let (start, end) = interval(key, range_end);
    if End::Key(start.clone()) >= end {
        // An empty range reads nothing; etcd still asks for the start key.
        return covers_point(granted, &start);
    }
    let mut spans: Vec<(Vec<u8>, End)> = granted
        .map(|p| interval(&p.key, &p.range_end))
        .filter(|(s, e)| End::Key(s.clone()) < *e)
        .collect();
    spans.sort();
    // Sweep: `reached` is the end of the covered prefix of the request.
    let mut reached = End::Key(start);
    for (s, e) in spans {
        if reached >= end {
            break;
        }
        if End::Key(s) > reached {
            break;
        }
        if e > reached {
            reached = e;
        }
    }
    reached >= end
}

fn covers_point<'a>(granted: impl Iterator<Item = &'a Permission>, key: &[u8]) -> bool {
    let mut next = key.to_vec();
    next.push(0);
    covers(granted, key, &next)
}
