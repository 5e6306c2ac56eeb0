//! Golden bytes of everything raft writes to disk or sends to a peer: a log entry as the WAL
//! stores it (the payload of a WAL entry record), the snapshot image, and each peer message
//! blob. Also: the format-0 snapshot image still loads, unknown tags are refused, and a crafted
//! entry of nested batches arriving on the peer port is refused without recursion.
//!
//! Changing these bytes changes the on-disk/on-wire format: bump the version and keep a decoder
//! for the old one.

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::storage::SnapshotMeta;
use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, Vote};

use super::network::{decode, encode, PeerError};
use super::state_machine::image::{decode_meta, SnapshotImage};
use super::{LogId, MemberNode, NodeId, StoredMembership, TypeConfig};
use crate::apply::{decode_bounded, Command, Envelope, Proposal, RequestHeader, State};
use crate::golden::{assert_golden, hex};
use crate::proto::etcdserverpb::PutRequest;

type RaftError = openraft::error::RaftError<NodeId>;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn entry(index: u64, proposal: Proposal) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(2, index),
        payload: EntryPayload::Normal(proposal),
    }
}

fn one_put() -> Proposal {
    let header = RequestHeader {
        id: 0x0102_0304_0506_0708,
        user: "u".into(),
        auth_revision: 9,
    };
    Proposal::One(Envelope::new(header, put("k", "v")))
}

fn batch() -> Proposal {
    let header = |id| RequestHeader {
        id,
        ..Default::default()
    };
    Proposal::Batch(vec![
        Envelope::new(header(1), put("k", "v")),
        Envelope::new(header(2), Command::LeaseRevoke { id: -4 }),
    ])
}

fn membership() -> StoredMembership {
    let node = MemberNode {
        name: "a".into(),
        peer_urls: vec!["http://a:2380".into()],
        client_urls: vec![],
    };
    let voters = vec![BTreeSet::from([1u64])];
    let membership = Membership::new(voters, BTreeMap::from([(1u64, node)]));
    StoredMembership::new(Some(log_id(1, 1)), membership)
}

fn meta() -> SnapshotMeta<NodeId, MemberNode> {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 7)),
        last_membership: membership(),
        snapshot_id: "2-7-0".into(),
    }
}

fn tiny_state() -> State {
    let mut state = State::new();
    state.apply(&put("k", "v"));
    state
}

// The payload of a WAL entry record (what `LogStore` writes) for one enveloped put.
const ENTRY_ONE_PUT: &str = "
    02 00 00 00 00 00 00 00     # log_id.leader_id.term = 2
    01 00 00 00 00 00 00 00     # log_id.leader_id.node_id = 1
    07 00 00 00 00 00 00 00     # log_id.index = 7
    01 00 00 00                 # EntryPayload::Normal
    4f 58 50 01                 # proposal tag: \"OXP\" version 1
    00 00 00 00                 # one envelope
    08 07 06 05 04 03 02 01     # header.id
    01 00 00 00 00 00 00 00 75  # header.user = \"u\"
    09 00 00 00 00 00 00 00     # header.auth_revision = 9
    00 00 00 00                 # Put
    06 00 00 00 00 00 00 00     # protobuf length
    0a 01 6b 12 01 76           # PutRequest { key: \"k\", value: \"v\" }
";

// The payload of a WAL entry record for a batch of two.
const ENTRY_BATCH: &str = "
    02 00 00 00 00 00 00 00     # log_id.leader_id.term = 2
    01 00 00 00 00 00 00 00     # log_id.leader_id.node_id = 1
    08 00 00 00 00 00 00 00     # log_id.index = 8
    01 00 00 00                 # EntryPayload::Normal
    4f 58 50 01                 # proposal tag: \"OXP\" version 1
    01 00 00 00                 # batch
    02 00 00 00 00 00 00 00     # of two envelopes
    01 00 00 00 00 00 00 00     # [0] header.id = 1
    00 00 00 00 00 00 00 00     #     header.user = \"\"
    00 00 00 00 00 00 00 00     #     header.auth_revision = 0
    00 00 00 00                 #     Put
    06 00 00 00 00 00 00 00     #     protobuf length
    0a 01 6b 12 01 76           #     PutRequest { key: \"k\", value: \"v\" }
    02 00 00 00 00 00 00 00     # [1] header.id = 2
    00 00 00 00 00 00 00 00     #     header.user = \"\"
    00 00 00 00 00 00 00 00     #     header.auth_revision = 0
    05 00 00 00                 #     LeaseRevoke
    fc ff ff ff ff ff ff ff     #     id = -4
";

// The payload of a WAL entry record for a batch of two auth changes: a user (its password only
// as a hash) and a permission.
const ENTRY_AUTH: &str = "
    02 00 00 00 00 00 00 00     # log_id.leader_id.term = 2
    01 00 00 00 00 00 00 00     # log_id.leader_id.node_id = 1
    09 00 00 00 00 00 00 00     # log_id.index = 9
    01 00 00 00                 # EntryPayload::Normal
    4f 58 50 01                 # proposal tag: \"OXP\" version 1
    01 00 00 00                 # batch
    02 00 00 00 00 00 00 00     # of two envelopes
    03 00 00 00 00 00 00 00     # [0] header.id = 3
    01 00 00 00 00 00 00 00 72  #     header.user = \"r\"
    05 00 00 00 00 00 00 00     #     header.auth_revision = 5
    07 00 00 00                 #     Auth
    03 00 00 00                 #       UserAdd
    01 00 00 00 00 00 00 00 75  #       name \"u\"
    01 00 00 00 00 00 00 00 68  #       password_hash \"h\" (a bcrypt hash in real life)
    00                          #       no_password false
    04 00 00 00 00 00 00 00     # [1] header.id = 4
    01 00 00 00 00 00 00 00 72  #     header.user = \"r\"
    05 00 00 00 00 00 00 00     #     header.auth_revision = 5
    07 00 00 00                 #     Auth
    0a 00 00 00                 #       RoleGrantPermission
    01 00 00 00 00 00 00 00 72  #       name \"r\"
    02 00 00 00                 #       READWRITE
    02 00 00 00 00 00 00 00     #       key \"p/\"
    70 2f
    02 00 00 00 00 00 00 00     #       range_end \"p0\"
    70 30
";

/// A v2 PUT of `/f` = "x" with an expiration, proposed at 1 s after the epoch.
const ENTRY_V2: &str = "
    02 00 00 00 00 00 00 00     # log_id.leader_id.term = 2
    01 00 00 00 00 00 00 00     # log_id.leader_id.node_id = 1
    0a 00 00 00 00 00 00 00     # log_id.index = 10
    01 00 00 00                 # EntryPayload::Normal
    4f 58 50 01                 # proposal tag: \"OXP\" version 1
    00 00 00 00                 # one envelope
    00 00 00 00 00 00 00 00     # header.id
    00 00 00 00 00 00 00 00     # header.user = \"\"
    00 00 00 00 00 00 00 00     # header.auth_revision = 0
    08 00 00 00                 # Command::V2
    00 00 00 00                 # V2Request::Put
    02 00 00 00 00 00 00 00     # path \"/f\"
    2f 66
    01 00 00 00 00 00 00 00 78  # value \"x\"
    00                          # dir false
    00 00 00 00 00 00 00 00     # prev_value \"\"
    00 00 00 00 00 00 00 00     # prev_index 0
    00                          # prev_exist: None
    01 00 5e d0 b2 00 00 00 00  # expire_ns: Some(3 s)
    00                          # refresh false
    00 ca 9a 3b 00 00 00 00     # now_ns 1 s
";

fn v2_entry() -> Proposal {
    Proposal::One(Envelope::new(
        RequestHeader::default(),
        Command::V2(v2_put()),
    ))
}

fn auth_batch() -> Proposal {
    use crate::auth::{AuthCommand, PermType, Permission};
    let header = |id| RequestHeader {
        id,
        user: "r".into(),
        auth_revision: 5,
    };
    let add = AuthCommand::UserAdd {
        name: "u".into(),
        password_hash: "h".into(),
        no_password: false,
    };
    let grant = AuthCommand::RoleGrantPermission {
        name: "r".into(),
        perm: Permission {
            perm_type: PermType::ReadWrite,
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
        },
    };
    Proposal::Batch(vec![
        Envelope::new(header(3), Command::Auth(add)),
        Envelope::new(header(4), Command::Auth(grant)),
    ])
}

#[test]
fn log_entry_bytes_are_fixed() {
    for (what, entry, expected) in [
        ("entry with one put", entry(7, one_put()), ENTRY_ONE_PUT),
        ("entry with a batch", entry(8, batch()), ENTRY_BATCH),
        (
            "entry with auth changes",
            entry(9, auth_batch()),
            ENTRY_AUTH,
        ),
        ("entry with a v2 write", entry(10, v2_entry()), ENTRY_V2),
    ] {
        let bytes = bincode::serialize(&entry).unwrap();
        assert_golden(what, &bytes, expected);
        let back: Entry<TypeConfig> = decode_bounded(&hex(expected)).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        assert_eq!(back.payload, entry.payload);
    }
}

/// A tiny snapshot image: one member, one put, one alarm, an auth store with one user and one
/// role, a v2 store with one file, v2 auth with one user and one role.
const IMAGE: &str = "
    4f 58 53 01                 # image tag: \"OXS\" version 1
    01                          # meta.last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
    01                          # meta.last_membership.log_id: Some
    01 00 00 00 00 00 00 00     #   term 1
    01 00 00 00 00 00 00 00     #   node 1
    01 00 00 00 00 00 00 00     #   index 1
    01 00 00 00 00 00 00 00     # configs: 1 joint config
    01 00 00 00 00 00 00 00     #   of 1 voter
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00 00 00 00 00     # nodes: 1
    01 00 00 00 00 00 00 00     #   id 1
    01 00 00 00 00 00 00 00 61  #   name \"a\"
    01 00 00 00 00 00 00 00     #   peer_urls: 1
    0d 00 00 00 00 00 00 00     #   \"http://a:2380\"
    68 74 74 70 3a 2f 2f 61 3a 32 33 38 30
    00 00 00 00 00 00 00 00     #   client_urls: 0
    05 00 00 00 00 00 00 00     # meta.snapshot_id = \"2-7-0\"
    32 2d 37 2d 30
    05 00 00 00                 # state format 5
    01 00 00 00                 # store format 1
    02 00 00 00 00 00 00 00     #   current_revision 2
    ff ff ff ff ff ff ff ff     #   compact_revision: never
    01 00 00 00 00 00 00 00     #   1 record
    02 00 00 00 00 00 00 00     #     main 2
    00 00 00 00 00 00 00 00     #     sub 0
    01 00 00 00 00 00 00 00 6b  #     key \"k\"
    01                          #     put: Some
    01 00 00 00 00 00 00 00 76  #       value \"v\"
    02 00 00 00 00 00 00 00     #       create_revision 2
    01 00 00 00 00 00 00 00     #       version 1
    00 00 00 00 00 00 00 00     #       lease 0
    00 00 00 00 00 00 00 00     # leases: 0
    01 00 00 00 00 00 00 00     # alarms: 1
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00                 #   NOSPACE
    01                          # auth.enabled
    05 00 00 00 00 00 00 00     # auth.revision 5
    01 00 00 00 00 00 00 00     # users: 1
    04 00 00 00 00 00 00 00     #   \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00 68  #     password_hash \"h\" (a bcrypt hash in real life)
    00                          #     no_password false
    01 00 00 00 00 00 00 00     #     roles: 1
    04 00 00 00 00 00 00 00     #       \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00     # roles: 1
    01 00 00 00 00 00 00 00 72  #   \"r\"
    01 00 00 00 00 00 00 00     #   perms: 1
    02 00 00 00                 #     READWRITE
    01 00 00 00 00 00 00 00 61  #     key \"a\"
    00 00 00 00 00 00 00 00     #     range_end \"\"
    01 00 00 00 00 00 00 00     # v2.nodes: 1
    01 00 00 00 00 00 00 00     #   path: 1 component
    01 00 00 00 00 00 00 00 66  #     \"f\"
    01                          #   value: Some
    01 00 00 00 00 00 00 00 78  #     \"x\"
    01 00 00 00 00 00 00 00     #   created_index 1
    01 00 00 00 00 00 00 00     #   modified_index 1
    01 00 5e d0 b2 00 00 00 00  #   expire_ns: Some(3 s)
    01 00 00 00 00 00 00 00     # v2.current_index 1
    01 00 00 00 00 00 00 00     # v2.ttl_keys: 1
    00 5e d0 b2 00 00 00 00     #   expire_ns 3 s
    01 00 00 00 00 00 00 00     #   path: 1 component
    01 00 00 00 00 00 00 00 66  #     \"f\"
    01 00 00 00 00 00 00 00     # v2.history: 1 event
    01 00 00 00                 #   action Set
    02 00 00 00 00 00 00 00     #   node.key \"/f\"
    2f 66
    01                          #   node.value: Some
    01 00 00 00 00 00 00 00 78  #     \"x\"
    00                          #   node.dir false
    01 00 5e d0 b2 00 00 00 00  #   node.expire_ns: Some(3 s)
    02 00 00 00 00 00 00 00     #   node.ttl 2
    01 00 00 00 00 00 00 00     #   node.modified_index 1
    01 00 00 00 00 00 00 00     #   node.created_index 1
    00                          #   prev_node: None
    00                          #   refresh false
    00                          # v2auth.enabled false
    01                          # v2auth.ensured true
    01 00 00 00 00 00 00 00     # v2auth.users: 1
    01 00 00 00 00 00 00 00 75  #   \"u\"
    01 00 00 00 00 00 00 00 68  #   password_hash \"h\"
    01                          #   roles: Some
    01 00 00 00 00 00 00 00     #     1 name
    01 00 00 00 00 00 00 00 72  #     \"r\"
    01 00 00 00 00 00 00 00     # v2auth.roles: 1
    01 00 00 00 00 00 00 00 72  #   \"r\"
    01                          #   read: Some
    01 00 00 00 00 00 00 00     #     1 pattern
    03 00 00 00 00 00 00 00     #     \"/a*\"
    2f 61 2a
    00                          #   write: None
";

/// The image of [`tiny_state_with_alarm_auth_and_v2`] with state format 4 (before v2 auth), as
/// written until then.
const IMAGE_STATE_FORMAT_4: &str = "
    4f 58 53 01                 # image tag: \"OXS\" version 1
    01                          # meta.last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
    01                          # meta.last_membership.log_id: Some
    01 00 00 00 00 00 00 00     #   term 1
    01 00 00 00 00 00 00 00     #   node 1
    01 00 00 00 00 00 00 00     #   index 1
    01 00 00 00 00 00 00 00     # configs: 1 joint config
    01 00 00 00 00 00 00 00     #   of 1 voter
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00 00 00 00 00     # nodes: 1
    01 00 00 00 00 00 00 00     #   id 1
    01 00 00 00 00 00 00 00 61  #   name \"a\"
    01 00 00 00 00 00 00 00     #   peer_urls: 1
    0d 00 00 00 00 00 00 00     #   \"http://a:2380\"
    68 74 74 70 3a 2f 2f 61 3a 32 33 38 30
    00 00 00 00 00 00 00 00     #   client_urls: 0
    05 00 00 00 00 00 00 00     # meta.snapshot_id = \"2-7-0\"
    32 2d 37 2d 30
    04 00 00 00                 # state format 4
    01 00 00 00                 # store format 1
    02 00 00 00 00 00 00 00     #   current_revision 2
    ff ff ff ff ff ff ff ff     #   compact_revision: never
    01 00 00 00 00 00 00 00     #   1 record
    02 00 00 00 00 00 00 00     #     main 2
    00 00 00 00 00 00 00 00     #     sub 0
    01 00 00 00 00 00 00 00 6b  #     key \"k\"
    01                          #     put: Some
    01 00 00 00 00 00 00 00 76  #       value \"v\"
    02 00 00 00 00 00 00 00     #       create_revision 2
    01 00 00 00 00 00 00 00     #       version 1
    00 00 00 00 00 00 00 00     #       lease 0
    00 00 00 00 00 00 00 00     # leases: 0
    01 00 00 00 00 00 00 00     # alarms: 1
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00                 #   NOSPACE
    01                          # auth.enabled
    05 00 00 00 00 00 00 00     # auth.revision 5
    01 00 00 00 00 00 00 00     # users: 1
    04 00 00 00 00 00 00 00     #   \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00 68  #     password_hash \"h\" (a bcrypt hash in real life)
    00                          #     no_password false
    01 00 00 00 00 00 00 00     #     roles: 1
    04 00 00 00 00 00 00 00     #       \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00     # roles: 1
    01 00 00 00 00 00 00 00 72  #   \"r\"
    01 00 00 00 00 00 00 00     #   perms: 1
    02 00 00 00                 #     READWRITE
    01 00 00 00 00 00 00 00 61  #     key \"a\"
    00 00 00 00 00 00 00 00     #     range_end \"\"
    01 00 00 00 00 00 00 00     # v2.nodes: 1
    01 00 00 00 00 00 00 00     #   path: 1 component
    01 00 00 00 00 00 00 00 66  #     \"f\"
    01                          #   value: Some
    01 00 00 00 00 00 00 00 78  #     \"x\"
    01 00 00 00 00 00 00 00     #   created_index 1
    01 00 00 00 00 00 00 00     #   modified_index 1
    01 00 5e d0 b2 00 00 00 00  #   expire_ns: Some(3 s)
    01 00 00 00 00 00 00 00     # v2.current_index 1
    01 00 00 00 00 00 00 00     # v2.ttl_keys: 1
    00 5e d0 b2 00 00 00 00     #   expire_ns 3 s
    01 00 00 00 00 00 00 00     #   path: 1 component
    01 00 00 00 00 00 00 00 66  #     \"f\"
    01 00 00 00 00 00 00 00     # v2.history: 1 event
    01 00 00 00                 #   action Set
    02 00 00 00 00 00 00 00     #   node.key \"/f\"
    2f 66
    01                          #   node.value: Some
    01 00 00 00 00 00 00 00 78  #     \"x\"
    00                          #   node.dir false
    01 00 5e d0 b2 00 00 00 00  #   node.expire_ns: Some(3 s)
    02 00 00 00 00 00 00 00     #   node.ttl 2
    01 00 00 00 00 00 00 00     #   node.modified_index 1
    01 00 00 00 00 00 00 00     #   node.created_index 1
    00                          #   prev_node: None
    00                          #   refresh false
";

/// The image of [`tiny_state_with_alarm_and_auth`] with state format 3 (before the v2 store),
/// as written until then.
const IMAGE_STATE_FORMAT_3: &str = "
    4f 58 53 01                 # image tag: \"OXS\" version 1
    01                          # meta.last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
    01                          # meta.last_membership.log_id: Some
    01 00 00 00 00 00 00 00     #   term 1
    01 00 00 00 00 00 00 00     #   node 1
    01 00 00 00 00 00 00 00     #   index 1
    01 00 00 00 00 00 00 00     # configs: 1 joint config
    01 00 00 00 00 00 00 00     #   of 1 voter
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00 00 00 00 00     # nodes: 1
    01 00 00 00 00 00 00 00     #   id 1
    01 00 00 00 00 00 00 00 61  #   name \"a\"
    01 00 00 00 00 00 00 00     #   peer_urls: 1
    0d 00 00 00 00 00 00 00     #   \"http://a:2380\"
    68 74 74 70 3a 2f 2f 61 3a 32 33 38 30
    00 00 00 00 00 00 00 00     #   client_urls: 0
    05 00 00 00 00 00 00 00     # meta.snapshot_id = \"2-7-0\"
    32 2d 37 2d 30
    03 00 00 00                 # state format 3
    01 00 00 00                 # store format 1
    02 00 00 00 00 00 00 00     #   current_revision 2
    ff ff ff ff ff ff ff ff     #   compact_revision: never
    01 00 00 00 00 00 00 00     #   1 record
    02 00 00 00 00 00 00 00     #     main 2
    00 00 00 00 00 00 00 00     #     sub 0
    01 00 00 00 00 00 00 00 6b  #     key \"k\"
    01                          #     put: Some
    01 00 00 00 00 00 00 00 76  #       value \"v\"
    02 00 00 00 00 00 00 00     #       create_revision 2
    01 00 00 00 00 00 00 00     #       version 1
    00 00 00 00 00 00 00 00     #       lease 0
    00 00 00 00 00 00 00 00     # leases: 0
    01 00 00 00 00 00 00 00     # alarms: 1
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00                 #   NOSPACE
    01                          # auth.enabled
    05 00 00 00 00 00 00 00     # auth.revision 5
    01 00 00 00 00 00 00 00     # users: 1
    04 00 00 00 00 00 00 00     #   \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00 68  #     password_hash \"h\" (a bcrypt hash in real life)
    00                          #     no_password false
    01 00 00 00 00 00 00 00     #     roles: 1
    04 00 00 00 00 00 00 00     #       \"root\"
    72 6f 6f 74
    01 00 00 00 00 00 00 00     # roles: 1
    01 00 00 00 00 00 00 00 72  #   \"r\"
    01 00 00 00 00 00 00 00     #   perms: 1
    02 00 00 00                 #     READWRITE
    01 00 00 00 00 00 00 00 61  #     key \"a\"
    00 00 00 00 00 00 00 00     #     range_end \"\"
";

/// The image of [`tiny_state_with_alarm`] with state format 2 (before the auth store), as
/// written until then.
const IMAGE_STATE_FORMAT_2: &str = "
    4f 58 53 01                 # image tag: \"OXS\" version 1
    01                          # meta.last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
    01                          # meta.last_membership.log_id: Some
    01 00 00 00 00 00 00 00     #   term 1
    01 00 00 00 00 00 00 00     #   node 1
    01 00 00 00 00 00 00 00     #   index 1
    01 00 00 00 00 00 00 00     # configs: 1 joint config
    01 00 00 00 00 00 00 00     #   of 1 voter
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00 00 00 00 00     # nodes: 1
    01 00 00 00 00 00 00 00     #   id 1
    01 00 00 00 00 00 00 00 61  #   name \"a\"
    01 00 00 00 00 00 00 00     #   peer_urls: 1
    0d 00 00 00 00 00 00 00     #   \"http://a:2380\"
    68 74 74 70 3a 2f 2f 61 3a 32 33 38 30
    00 00 00 00 00 00 00 00     #   client_urls: 0
    05 00 00 00 00 00 00 00     # meta.snapshot_id = \"2-7-0\"
    32 2d 37 2d 30
    02 00 00 00                 # state format 2
    01 00 00 00                 # store format 1
    02 00 00 00 00 00 00 00     #   current_revision 2
    ff ff ff ff ff ff ff ff     #   compact_revision: never
    01 00 00 00 00 00 00 00     #   1 record
    02 00 00 00 00 00 00 00     #     main 2
    00 00 00 00 00 00 00 00     #     sub 0
    01 00 00 00 00 00 00 00 6b  #     key \"k\"
    01                          #     put: Some
    01 00 00 00 00 00 00 00 76  #       value \"v\"
    02 00 00 00 00 00 00 00     #       create_revision 2
    01 00 00 00 00 00 00 00     #       version 1
    00 00 00 00 00 00 00 00     #       lease 0
    00 00 00 00 00 00 00 00     # leases: 0
    01 00 00 00 00 00 00 00     # alarms: 1
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00                 #   NOSPACE
";

/// The same image as [`IMAGE`] with state format 1 (before alarms), as written until then.
const IMAGE_STATE_FORMAT_1: &str = "
    4f 58 53 01                 # image tag: \"OXS\" version 1
    01                          # meta.last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
    01                          # meta.last_membership.log_id: Some
    01 00 00 00 00 00 00 00     #   term 1
    01 00 00 00 00 00 00 00     #   node 1
    01 00 00 00 00 00 00 00     #   index 1
    01 00 00 00 00 00 00 00     # configs: 1 joint config
    01 00 00 00 00 00 00 00     #   of 1 voter
    01 00 00 00 00 00 00 00     #   member 1
    01 00 00 00 00 00 00 00     # nodes: 1
    01 00 00 00 00 00 00 00     #   id 1
    01 00 00 00 00 00 00 00 61  #   name \"a\"
    01 00 00 00 00 00 00 00     #   peer_urls: 1
    0d 00 00 00 00 00 00 00     #   \"http://a:2380\"
    68 74 74 70 3a 2f 2f 61 3a 32 33 38 30
    00 00 00 00 00 00 00 00     #   client_urls: 0
    05 00 00 00 00 00 00 00     # meta.snapshot_id = \"2-7-0\"
    32 2d 37 2d 30
    01 00 00 00                 # state format 1
    01 00 00 00                 # store format 1
    02 00 00 00 00 00 00 00     #   current_revision 2
    ff ff ff ff ff ff ff ff     #   compact_revision: never
    01 00 00 00 00 00 00 00     #   1 record
    02 00 00 00 00 00 00 00     #     main 2
    00 00 00 00 00 00 00 00     #     sub 0
    01 00 00 00 00 00 00 00 6b  #     key \"k\"
    01                          #     put: Some
    01 00 00 00 00 00 00 00 76  #       value \"v\"
    02 00 00 00 00 00 00 00     #       create_revision 2
    01 00 00 00 00 00 00 00     #       version 1
    00 00 00 00 00 00 00 00     #       lease 0
    00 00 00 00 00 00 00 00     # leases: 0
";

fn tiny_state_with_alarm() -> State {
    let mut state = tiny_state();
    state.apply(&Command::Alarm {
        action: 1,
        member_id: 1,
        alarm: 1,
    });
    state
}

fn tiny_state_with_alarm_and_auth() -> State {
    use crate::auth::{AuthCommand, PermType, Permission};
    let mut state = tiny_state_with_alarm();
    let changes = [
        AuthCommand::UserAdd {
            name: "root".into(),
            password_hash: "h".into(),
            no_password: false,
        },
        AuthCommand::RoleAdd { name: "r".into() },
        AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm: Permission {
                perm_type: PermType::ReadWrite,
                key: b"a".to_vec(),
                range_end: Vec::new(),
            },
        },
        AuthCommand::UserGrantRole {
            user: "root".into(),
            role: "root".into(),
        },
        AuthCommand::Enable,
    ];
    for change in changes {
        assert!(state.apply(&Command::Auth(change)).result.is_ok());
    }
    state
}

#[test]
fn snapshot_image_bytes_are_fixed() {
    let image = SnapshotImage {
        meta: meta(),
        state: tiny_state_with_alarm_auth_and_v2_auth(),
    };
    let bytes = bincode::serialize(&image).unwrap();
    assert_golden("snapshot image", &bytes, IMAGE);
    let back: SnapshotImage<State> = decode_bounded(&bytes).unwrap();
    assert_eq!(back.meta, meta());
    assert_eq!(back.state, tiny_state_with_alarm_auth_and_v2_auth());
    assert_eq!(decode_meta(&bytes).unwrap(), meta());
}

/// Images written before v2 auth existed (state format 4) still load, with v2 auth off and
/// empty.
#[test]
fn a_state_format_4_image_still_loads() {
    let back: SnapshotImage<State> = decode_bounded(&hex(IMAGE_STATE_FORMAT_4)).unwrap();
    assert_eq!(back.meta, meta());
    assert_eq!(back.state, tiny_state_with_alarm_auth_and_v2());
    assert_eq!(
        *back.state.v2.auth(),
        crate::v2store::auth::V2Auth::default()
    );
}

/// A v2 auth state with a user and a role, set without the store's index (the image test pins
/// the encoding of v2 auth, not the history of its writes).
fn tiny_state_with_alarm_auth_and_v2_auth() -> State {
    use crate::v2store::auth::{AuthChange, NodeWriter, Perms, Resource};
    struct NoNodes;
    impl NodeWriter for NoNodes {
        fn make_directory(&mut self) {}
        fn write(&mut self, _: crate::v2store::Action, _: Resource) {}
    }
    let mut state = tiny_state_with_alarm_auth_and_v2();
    let mut auth = state.v2.auth().clone();
    let changes = [
        AuthChange::CreateUser {
            name: "u".into(),
            password_hash: Some("h".into()),
            roles: Some(vec!["r".into()]),
        },
        AuthChange::CreateRole {
            name: "r".into(),
            perms: Perms {
                read: Some(vec!["/a*".into()]),
                write: None,
            },
        },
    ];
    for change in changes {
        assert!(auth.apply(&change, &mut NoNodes).0.is_ok());
    }
    std::sync::Arc::make_mut(&mut state.v2).set_auth(auth);
    state
}

/// Images written before the v2 store existed (state format 3) still load, with an empty v2
/// store.
#[test]
fn a_state_format_3_image_still_loads() {
    let back: SnapshotImage<State> = decode_bounded(&hex(IMAGE_STATE_FORMAT_3)).unwrap();
    assert_eq!(back.meta, meta());
    assert_eq!(back.state, tiny_state_with_alarm_and_auth());
    assert_eq!(*back.state.v2, crate::v2store::Store::new());
}

fn v2_put() -> crate::v2store::V2Request {
    crate::v2store::V2Request::Put {
        path: "/f".into(),
        value: "x".into(),
        dir: false,
        prev_value: String::new(),
        prev_index: 0,
        prev_exist: None,
        expire_ns: Some(3_000_000_000),
        refresh: false,
        now_ns: 1_000_000_000,
    }
}

fn tiny_state_with_alarm_auth_and_v2() -> State {
    let mut state = tiny_state_with_alarm_and_auth();
    // Straight into the v2 store: the NOSPACE alarm above refuses writes through apply.
    let outcome = std::sync::Arc::make_mut(&mut state.v2).apply(&v2_put());
    assert!(matches!(outcome, crate::v2store::V2Outcome::Event { .. }));
    state
}

/// Images written before the auth store existed (state format 2) still load, with a fresh auth
/// store (auth off, revision 1).
#[test]
fn a_state_format_2_image_still_loads() {
    let back: SnapshotImage<State> = decode_bounded(&hex(IMAGE_STATE_FORMAT_2)).unwrap();
    assert_eq!(back.meta, meta());
    assert_eq!(back.state, tiny_state_with_alarm());
    assert_eq!(*back.state.auth, crate::auth::AuthStore::new());
}

/// Images written before alarms existed (state format 1) still load, without alarms.
#[test]
fn a_state_format_1_image_still_loads() {
    let back: SnapshotImage<State> = decode_bounded(&hex(IMAGE_STATE_FORMAT_1)).unwrap();
    assert_eq!(back.meta, meta());
    assert_eq!(back.state, tiny_state());
    assert!(back.state.alarms.is_empty());
}

/// Snapshot files written before images had a tag (`meta state`) still load.
#[test]
fn a_format_0_snapshot_image_still_loads() {
    for meta in [
        meta(),
        SnapshotMeta {
            last_log_id: None,
            ..meta()
        },
    ] {
        let bytes = bincode::serialize(&(&meta, tiny_state())).unwrap();
        let back: SnapshotImage<State> = decode_bounded(&bytes).unwrap();
        assert_eq!(back.meta, meta);
        assert_eq!(back.state, tiny_state());
        assert_eq!(decode_meta(&bytes).unwrap(), meta);
    }
}

#[test]
fn an_image_with_an_unknown_tag_is_refused() {
    let image = SnapshotImage {
        meta: meta(),
        state: tiny_state(),
    };
    let mut bytes = bincode::serialize(&image).unwrap();
    bytes[3] = 2;
    let err = decode_bounded::<SnapshotImage<State>>(&bytes)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("unknown snapshot image format: tag 4f 58 53 02")),
        "{err:?}"
    );
    assert!(decode_meta(&bytes).is_err());
}

fn append_request() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 6)),
        entries: vec![entry(7, one_put())],
        leader_commit: Some(log_id(2, 6)),
    }
}

const PEER_APPEND_REQUEST: &str = "
    4f 58 52 01                 # peer tag: \"OXR\" version 1
    02 00 00 00 00 00 00 00     # vote.leader_id.term = 2
    01 00 00 00 00 00 00 00     # vote.leader_id.node_id = 1
    01                          # vote.committed
    01                          # prev_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    06 00 00 00 00 00 00 00     #   index 6
    01 00 00 00 00 00 00 00     # entries: 1 (as in ENTRY_ONE_PUT)
    02 00 00 00 00 00 00 00  01 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00
    01 00 00 00
    4f 58 50 01  00 00 00 00  08 07 06 05 04 03 02 01
    01 00 00 00 00 00 00 00 75  09 00 00 00 00 00 00 00
    00 00 00 00  06 00 00 00 00 00 00 00  0a 01 6b 12 01 76
    01                          # leader_commit: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    06 00 00 00 00 00 00 00     #   index 6
";
const PEER_APPEND_RESPONSE: &str = "
    4f 58 52 01                 # peer tag: \"OXR\" version 1
    00 00 00 00                 # Ok
    00 00 00 00                 # AppendEntriesResponse::Success
";
const PEER_VOTE_REQUEST: &str = "
    4f 58 52 01                 # peer tag: \"OXR\" version 1
    03 00 00 00 00 00 00 00     # vote.leader_id.term = 3
    01 00 00 00 00 00 00 00     # vote.leader_id.node_id = 1
    00                          # vote.committed = false
    01                          # last_log_id: Some
    02 00 00 00 00 00 00 00     #   term 2
    01 00 00 00 00 00 00 00     #   node 1
    07 00 00 00 00 00 00 00     #   index 7
";

#[test]
fn peer_message_bytes_are_fixed() {
    let append = append_request();
    let bytes = encode(&append).unwrap();
    assert_golden("append-entries request", &bytes, PEER_APPEND_REQUEST);
    let back: AppendEntriesRequest<TypeConfig> = decode(&bytes).unwrap();
    assert_eq!(back.entries[0].payload, append.entries[0].payload);
    assert_eq!(back.leader_commit, append.leader_commit);

    let reply: Result<AppendEntriesResponse<NodeId>, RaftError> =
        Ok(AppendEntriesResponse::Success);
    let bytes = encode(&reply).unwrap();
    assert_golden("append-entries response", &bytes, PEER_APPEND_RESPONSE);
    let back: Result<AppendEntriesResponse<NodeId>, RaftError> = decode(&bytes).unwrap();
    assert_eq!(back, reply);

    let vote = VoteRequest::<NodeId>::new(Vote::new(3, 1), Some(log_id(2, 7)));
    let bytes = encode(&vote).unwrap();
    assert_golden("vote request", &bytes, PEER_VOTE_REQUEST);
    assert_eq!(decode::<VoteRequest<NodeId>>(&bytes).unwrap(), vote);
}

#[test]
fn a_peer_message_without_the_tag_is_refused() {
    let vote = VoteRequest::<NodeId>::new(Vote::new(3, 1), Some(log_id(2, 7)));
    let untagged = bincode::serialize(&vote).unwrap();
    match decode::<VoteRequest<NodeId>>(&untagged) {
        Err(PeerError::Codec(e)) => assert!(e.contains("unknown peer message format"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(decode::<VoteRequest<NodeId>>(&[]).is_err());
    let mut next_version = encode(&vote).unwrap();
    next_version[3] = 2;
    assert!(decode::<VoteRequest<NodeId>>(&next_version).is_err());
}

/// Bug guarded against: an append-entries request from the peer port whose entry held a
/// million nested format-0 batches overflowed the stack of the decoding task.
#[test]
fn nested_batches_from_a_peer_are_refused_without_recursion() {
    let request = append_request();
    let mut bytes = super::network::PEER_TAG_V1.to_vec();
    bincode::serialize_into(&mut bytes, &request.vote).unwrap();
    bincode::serialize_into(&mut bytes, &request.prev_log_id).unwrap();
    bincode::serialize_into(&mut bytes, &1u64).unwrap(); // one entry
    bincode::serialize_into(&mut bytes, &log_id(2, 7)).unwrap();
    bincode::serialize_into(&mut bytes, &1u32).unwrap(); // EntryPayload::Normal
    bytes.extend(hex("06 00 00 00  01 00 00 00 00 00 00 00").repeat(1_000_000));
    let err = decode::<AppendEntriesRequest<TypeConfig>>(&bytes).map(|r| r.entries.len());
    assert!(
        matches!(&err, Err(PeerError::Codec(e)) if e.contains("nested")),
        "{err:?}"
    );
}

/// The WAL record payload of entry `index` as written before envelopes: openraft's entry around
/// a bare command (or a format-0 batch), no tag.
fn format_0_entry(index: u64, proposal: &[u8]) -> Vec<u8> {
    let mut bytes = bincode::serialize(&log_id(2, index)).unwrap();
    bytes.extend_from_slice(&1u32.to_le_bytes()); // EntryPayload::Normal
    bytes.extend_from_slice(proposal);
    bytes
}

fn open_wal(disk: &crate::io::sim::SimDisk) -> (crate::wal::Wal, crate::wal::Recovered) {
    let cfg = crate::wal::WalConfig {
        segment_bytes: 64 * 1024,
        ..crate::wal::WalConfig::default()
    };
    let dir = std::path::Path::new("/data/member/wal");
    crate::wal::Wal::open(std::sync::Arc::new(disk.clone()), dir, cfg).unwrap()
}

fn record(index: u64, payload: Vec<u8>) -> crate::wal::LogRecord {
    crate::wal::LogRecord {
        index,
        term: 2,
        payload,
    }
}

/// A data dir written before envelopes still loads: its entries read as envelopes with an
/// empty header. An entry of an unknown proposal version stops the start with an error that
/// names the log index and the tag.
#[test]
fn a_format_0_wal_recovers_and_an_unknown_version_is_refused() {
    use openraft::RaftLogReader;

    let disk = crate::io::sim::SimDisk::new(5);
    let (mut wal, _) = open_wal(&disk);
    let bare_put = bincode::serialize(&put("k", "v")).unwrap();
    let mut bare_batch = hex("06 00 00 00  02 00 00 00 00 00 00 00");
    bare_batch.extend_from_slice(&bare_put);
    bare_batch.extend(hex("05 00 00 00  fc ff ff ff ff ff ff ff"));
    let records = [
        record(1, format_0_entry(1, &bare_put)),
        record(2, format_0_entry(2, &bare_batch)),
    ];
    wal.append(&records).unwrap();
    wal.sync().unwrap();
    drop(wal);

    let (wal, recovered) = open_wal(&disk);
    let mut store =
        super::log_store::LogStore::recover(crate::wal::GroupCommit::new(wal), recovered, 1)
            .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let entries = runtime.block_on(store.try_get_log_entries(1..3)).unwrap();
    let bare = |c| Envelope::new(RequestHeader::default(), c);
    let payloads: Vec<_> = entries.into_iter().map(|e| e.payload).collect();
    assert_eq!(
        payloads,
        vec![
            EntryPayload::Normal(Proposal::One(bare(put("k", "v")))),
            EntryPayload::Normal(Proposal::Batch(vec![
                bare(put("k", "v")),
                bare(Command::LeaseRevoke { id: -4 })
            ])),
        ]
    );
    drop(store);

    let (mut wal, _) = open_wal(&disk);
    let mut next_version = bincode::serialize(&entry(3, one_put())).unwrap();
    next_version[28 + 3] = 2; // the proposal tag's version byte, after the log ID and kind
    wal.append(&[record(3, next_version)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, recovered) = open_wal(&disk);
    let err = super::log_store::LogStore::recover(crate::wal::GroupCommit::new(wal), recovered, 1)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("log index 3")
                && e.contains("unknown proposal format: tag 4f 58 50 02")),
        "{err:?}"
    );
}

const PEER_MEMBERSHIP_CHANGE: &str = "
    4f 58 52 01                 # peer tag: \"OXR\" version 1
    02 00 00 00                 # MembershipChange::Update
    0a 00 00 00 00 00 00 00     # id 0x0a
    01 00 00 00 00 00 00 00     # peer_urls: 1 URL
    0a 00 00 00 00 00 00 00     #   10 bytes
    68 74 74 70 3a 2f 2f 68 3a 31   # \"http://h:1\"
";

/// A membership change a follower forwards to the leader (`ForwardMembership`).
#[test]
fn forwarded_membership_change_bytes_are_fixed() {
    let change = crate::raft::forward::MembershipChange::Update {
        id: 0x0a,
        peer_urls: vec!["http://h:1".into()],
    };
    let bytes = encode(&change).unwrap();
    assert_golden(
        "forwarded membership change",
        &bytes,
        PEER_MEMBERSHIP_CHANGE,
    );
    assert_eq!(
        decode::<crate::raft::forward::MembershipChange>(&bytes).unwrap(),
        change
    );
}
