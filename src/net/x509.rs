//! The one fact this crate reads out of a certificate: the subject's common name (CN), which
//! etcd uses as the user of a client certificate and checks against `--peer-cert-allowed-cn`.
//! rustls has verified the certificate before anything here looks at it; this is a reader of
//! DER (ITU-T X.690) bounded by its input, never a verifier.
//!
//! Grammar walked (RFC 5280 §4.1):
//! ```text
//! Certificate    = SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! tbsCertificate = SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
//!                             issuer Name, validity SEQUENCE, subject Name, ... }
//! Name           = SEQUENCE OF RelativeDistinguishedName
//! RDN            = SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY (a string type) }
//! ```
//! Invariant: no index outside the input is ever read; malformed input gives `None`.

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;
/// 2.5.4.3, id-at-commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of an element that must have `tag`, and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = element(input)?;
    (t == tag).then_some((contents, rest))
}

/// The subject's common name of a DER certificate (the last CN, as Go reads it), if any.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (certificate, _) = expect(der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(certificate, TAG_SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&TAG_VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (subject, _) = expect(rest, TAG_SEQUENCE)?;
    let mut name = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (set, after) = expect(rdns, TAG_SET)?;
        rdns = after;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (attribute, after) = expect(attributes, TAG_SEQUENCE)?;
            attributes = after;
            let (oid, value) = expect(attribute, TAG_OID)?;
            if oid == OID_COMMON_NAME {
                let (_, text, _) = element(value)?;
                name = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_with(cn: Option<&str>) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("parameters");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "etcd");
        if let Some(cn) = cn {
            dn.push(rcgen::DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_the_subject() {
        assert_eq!(
            common_name(&certificate_with(Some("root"))).as_deref(),
            Some("root")
        );
        assert_eq!(common_name(&certificate_with(None)), None);
    }

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        let der = certificate_with(Some("member-1"));
        for cut in [0, 1, 2, 10, der.len() / 2] {
            assert_eq!(common_name(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(b"not DER at all"), None);
    }
}
