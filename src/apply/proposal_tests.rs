//! Proposal format tests: the exact bytes of version 1, the format-0 decoder kept for old data
//! dirs, refusals (unknown tags, nested batches) and round-trip / no-panic properties.

use proptest::prelude::*;

use super::tests::command_strategy;
use super::*;
use crate::golden::{assert_golden, hex};

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn header(id: u64, user: &str, auth_revision: u64) -> RequestHeader {
    RequestHeader {
        id,
        user: user.into(),
        auth_revision,
    }
}

fn bare(command: Command) -> Envelope {
    Envelope::new(RequestHeader::default(), command)
}

// Changing these bytes changes the on-disk/on-wire format: bump the version and keep a decoder
// for the old one.
const ONE_PUT_V1: &str = "
    4f 58 50 01                 # tag: \"OXP\" version 1
    00 00 00 00                 # kind 0: one envelope
    08 07 06 05 04 03 02 01     # header.id = 0x0102030405060708
    01 00 00 00 00 00 00 00 75  # header.user = \"u\"
    09 00 00 00 00 00 00 00     # header.auth_revision = 9
    00 00 00 00                 # command variant 0: Put
    06 00 00 00 00 00 00 00     # protobuf length 6
    0a 01 6b 12 01 76           # PutRequest { key: \"k\", value: \"v\" }
";

// Changing these bytes changes the on-disk/on-wire format: bump the version and keep a decoder
// for the old one.
const BATCH_V1: &str = "
    4f 58 50 01                 # tag: \"OXP\" version 1
    01 00 00 00                 # kind 1: batch
    02 00 00 00 00 00 00 00     # two envelopes
    01 00 00 00 00 00 00 00     # [0] header.id = 1
    00 00 00 00 00 00 00 00     #     header.user = \"\"
    00 00 00 00 00 00 00 00     #     header.auth_revision = 0
    00 00 00 00                 #     Put
    06 00 00 00 00 00 00 00     #     protobuf length 6
    0a 01 6b 12 01 76           #     PutRequest { key: \"k\", value: \"v\" }
    02 00 00 00 00 00 00 00     # [1] header.id = 2
    04 00 00 00 00 00 00 00     #     header.user = \"root\"
    72 6f 6f 74
    07 00 00 00 00 00 00 00     #     header.auth_revision = 7
    05 00 00 00                 #     LeaseRevoke
    fc ff ff ff ff ff ff ff     #     id = -4
";

#[test]
fn version_1_bytes_are_fixed() {
    let one = Proposal::One(Envelope::new(
        header(0x0102_0304_0506_0708, "u", 9),
        put("k", "v"),
    ));
    assert_golden("one put", &one.encode().unwrap(), ONE_PUT_V1);
    assert_eq!(Proposal::decode(&hex(ONE_PUT_V1)).unwrap(), one);

    let batch = Proposal::Batch(vec![
        Envelope::new(header(1, "", 0), put("k", "v")),
        Envelope::new(header(2, "root", 7), Command::LeaseRevoke { id: -4 }),
    ]);
    assert_golden("batch", &batch.encode().unwrap(), BATCH_V1);
    assert_eq!(Proposal::decode(&hex(BATCH_V1)).unwrap(), batch);
}

// A leader's lease expiry (variant 9), as it reaches the log.
const LEASE_EXPIRE_V1: &str = "
    4f 58 50 01                 # tag: \"OXP\" version 1
    00 00 00 00                 # kind 0: one command
    00 00 00 00 00 00 00 00     # header.id = 0
    00 00 00 00 00 00 00 00     # header.user = \"\"
    00 00 00 00 00 00 00 00     # header.auth_revision = 0
    09 00 00 00                 # LeaseExpire
    fc ff ff ff ff ff ff ff     # id = -4
    22 00 00 00 00 00 00 00     # term = 34
";

#[test]
fn a_lease_expiry_has_fixed_bytes() {
    let one = Proposal::One(Envelope::new(
        header(0, "", 0),
        Command::LeaseExpire { id: -4, term: 34 },
    ));
    assert_golden("lease expire", &one.encode().unwrap(), LEASE_EXPIRE_V1);
    assert_eq!(Proposal::decode(&hex(LEASE_EXPIRE_V1)).unwrap(), one);
}

/// Entries written before envelopes (format 0: a bare command, or a batch of bare commands)
/// still decode, as envelopes with an empty header.
#[test]
fn format_0_entries_still_decode_with_an_empty_header() {
    let legacy_put = hex("00 00 00 00  06 00 00 00 00 00 00 00  0a 01 6b 12 01 76");
    // A plain command's layout did not change: format 0 is exactly the command's encoding.
    assert_eq!(bincode::serialize(&put("k", "v")).unwrap(), legacy_put);
    assert_eq!(
        Proposal::decode(&legacy_put).unwrap(),
        Proposal::One(bare(put("k", "v")))
    );

    let legacy_grant = hex("04 00 00 00  05 00 00 00 00 00 00 00  3c 00 00 00 00 00 00 00");
    assert_eq!(
        Proposal::decode(&legacy_grant).unwrap(),
        Proposal::One(bare(Command::LeaseGrant { id: 5, ttl: 60 }))
    );

    let legacy_batch = hex("
        06 00 00 00  02 00 00 00 00 00 00 00                    # batch of two
        00 00 00 00  06 00 00 00 00 00 00 00  0a 01 6b 12 01 76 # Put k=v
        05 00 00 00  fc ff ff ff ff ff ff ff                    # LeaseRevoke -4
    ");
    assert_eq!(
        Proposal::decode(&legacy_batch).unwrap(),
        Proposal::Batch(vec![
            bare(put("k", "v")),
            bare(Command::LeaseRevoke { id: -4 })
        ])
    );
}

#[test]
fn unknown_tags_are_refused_with_a_typed_error() {
    for tag in [
        *b"OXP\x02",
        *b"OXP\x00",
        [7, 0, 0, 0],
        [0, 0, 0, 1],
        *b"OXS\x01",
    ] {
        let mut bytes = hex(ONE_PUT_V1);
        bytes[..4].copy_from_slice(&tag);
        match Proposal::decode(&bytes) {
            Err(CodecError::UnknownFormat { what, tag: found }) => {
                assert_eq!((what, found), ("proposal", tag));
            }
            other => panic!("tag {tag:?}: {other:?}"),
        }
    }
    // Inside a larger value (a raft entry, a peer message) the refusal is a decode error that
    // names the tag.
    let mut bytes = hex(ONE_PUT_V1);
    bytes[3] = 2;
    let err = decode_bounded::<Proposal>(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("unknown proposal format: tag 4f 58 50 02"),
        "{err}"
    );
}

/// Bug guarded against: format 0 allowed a batch inside a batch, decoded recursively, so a peer
/// could send an entry of nested batches that overflowed the decoding thread's stack. A batch
/// now holds envelopes of plain commands (nothing can nest), and the format-0 decoder refuses a
/// nested batch after one level.
#[test]
fn deeply_nested_format_0_batches_are_refused_without_recursion() {
    let one_level = hex("06 00 00 00  01 00 00 00 00 00 00 00");
    let nested = one_level.repeat(1_000_000);
    let err = Proposal::decode(&nested).unwrap_err().to_string();
    assert!(err.contains("nested"), "{err}");

    let shallow = hex("
        06 00 00 00  01 00 00 00 00 00 00 00    # batch of one ...
        06 00 00 00  00 00 00 00 00 00 00 00    # ... holding an empty batch
    ");
    let err = Proposal::decode(&shallow).unwrap_err().to_string();
    assert!(err.contains("nested"), "{err}");
}

/// A length that claims more than the input holds is refused before anything is allocated.
#[test]
fn forged_lengths_are_refused() {
    let mut huge_batch = hex("4f 58 50 01  01 00 00 00");
    huge_batch.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(Proposal::decode(&huge_batch).is_err());
    let mut huge_user = hex("4f 58 50 01  00 00 00 00  01 00 00 00 00 00 00 00");
    huge_user.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(Proposal::decode(&huge_user).is_err());
    let mut trailing = hex(ONE_PUT_V1);
    trailing.push(0);
    assert!(Proposal::decode(&trailing).is_err());
}

fn envelope_strategy() -> impl Strategy<Value = Envelope> {
    let user = proptest::collection::vec(b'a'..=b'z', 0..8)
        .prop_map(|b| String::from_utf8(b).unwrap_or_default());
    (any::<u64>(), user, any::<u64>(), command_strategy()).prop_map(
        |(id, user, auth_revision, cmd)| Envelope::new(header(id, &user, auth_revision), cmd),
    )
}

fn proposal_strategy() -> impl Strategy<Value = Proposal> {
    prop_oneof![
        envelope_strategy().prop_map(Proposal::One),
        proptest::collection::vec(envelope_strategy(), 0..8).prop_map(Proposal::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_proposal_round_trips(proposal in proposal_strategy()) {
        let bytes = proposal.encode().unwrap();
        prop_assert_eq!(&bytes[..4], &PROPOSAL_TAG_V1[..]);
        prop_assert_eq!(Proposal::decode(&bytes).unwrap(), proposal);
    }

    /// Arbitrary bytes, alone or behind a real tag (so the body decoders see them), never
    /// panic the decoder.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(PROPOSAL_TAG_V1.to_vec()),
            (0u8..=6).prop_map(|v| vec![v, 0, 0, 0]),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = prefix;
        bytes.extend_from_slice(&body);
        let _ = Proposal::decode(&bytes);
    }

    /// Any prefix of a valid encoding is refused (never misread as a shorter proposal).
    #[test]
    fn truncated_encodings_are_refused(proposal in proposal_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = proposal.encode().unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(Proposal::decode(&bytes[..cut]).is_err());
    }
}
