//! The facts this crate reads out of a certificate: the subject's common name (CN), which etcd
//! uses as the user of a client certificate and checks against `--peer-cert-allowed-cn`, and the
//! subject alternative names, checked against `--client-cert-allowed-hostname` and
//! `--peer-cert-allowed-hostname` (Go's `VerifyHostname` rules: IP SANs for an IP, DNS SANs
//! with a leading `*.` matching one label for a name, case-insensitive).
//! rustls has verified the certificate before anything here looks at it; this is a reader of
//! DER (ITU-T X.690) bounded by its input, never a verifier.
//!
//! Grammar walked (RFC 5280 §4.1):
//! ```text
//! Certificate    = SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! tbsCertificate = SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
//!                             issuer Name, validity SEQUENCE, subject Name,
//!                             subjectPublicKeyInfo SEQUENCE, [1] OPTIONAL, [2] OPTIONAL,
//!                             [3] EXPLICIT SEQUENCE OF Extension OPTIONAL }
//! Extension      = SEQUENCE { extnID OID, critical BOOLEAN OPTIONAL, extnValue OCTET STRING }
//! subjectAltName = extnID 2.5.29.17, extnValue = SEQUENCE OF GeneralName
//! GeneralName    = [2] dNSName IA5String | [7] iPAddress OCTET STRING (4 or 16 bytes) | ...
//! Name           = SEQUENCE OF RelativeDistinguishedName
//! RDN            = SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY (a string type) }
//! ```
//! Invariant: no index outside the input is ever read; malformed input gives `None`.

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_DNS_NAME: u8 = 0x82;
const TAG_IP_ADDRESS: u8 = 0x87;
/// 2.5.4.3, id-at-commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17, id-ce-subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

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

/// The elements of tbsCertificate from `subject` on.
fn from_subject(der: &[u8]) -> Option<&[u8]> {
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
    Some(rest)
}

/// A subject alternative name this crate understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltName {
    Dns(String),
    Ip(std::net::IpAddr),
}

/// The subject alternative names of a DER certificate (empty without the extension).
pub fn alt_names(der: &[u8]) -> Option<Vec<AltName>> {
    let rest = from_subject(der)?;
    // subject, subjectPublicKeyInfo
    let mut rest = element(element(rest)?.2)?.2;
    let mut names = Vec::new();
    while let Some((tag, contents, after)) = element(rest) {
        rest = after;
        if tag != TAG_EXTENSIONS {
            continue;
        }
        let (mut extensions, _) = expect(contents, TAG_SEQUENCE)?;
        while !extensions.is_empty() {
            let (extension, after) = expect(extensions, TAG_SEQUENCE)?;
            extensions = after;
            let (oid, mut value) = expect(extension, TAG_OID)?;
            if oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            if value.first() == Some(&TAG_BOOLEAN) {
                value = element(value)?.2;
            }
            let (octets, _) = expect(value, TAG_OCTET_STRING)?;
            let (mut general, _) = expect(octets, TAG_SEQUENCE)?;
            while !general.is_empty() {
                let (tag, name, after) = element(general)?;
                general = after;
                match tag {
                    TAG_DNS_NAME => {
                        names.push(AltName::Dns(String::from_utf8_lossy(name).into_owned()))
                    }
                    TAG_IP_ADDRESS => {
                        if let Ok(v4) = <[u8; 4]>::try_from(name) {
                            names.push(AltName::Ip(v4.into()));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(name) {
                            names.push(AltName::Ip(v6.into()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Some(names)
}

/// Whether the certificate is valid for `host` by its subject alternative names.
pub fn matches_host(der: &[u8], host: &str) -> bool {
    let Some(names) = alt_names(der) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return names.contains(&AltName::Ip(ip));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|n| match n {
        AltName::Dns(pattern) => dns_matches(&pattern.to_ascii_lowercase(), &host),
        AltName::Ip(_) => false,
    })
}

/// `*.example.com` matches exactly one leading label; anything else matches itself.
fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The subject's common name of a DER certificate (the last CN, as Go reads it), if any.
pub fn common_name(der: &[u8]) -> Option<String> {
    let rest = from_subject(der)?;
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
        certificate_for(cn, &["127.0.0.1"])
    }

    fn certificate_for(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("parameters");
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
    fn hosts_are_matched_against_ip_and_dns_names() {
        let sans = ["10.0.0.1", "::1", "etcd.example.com", "*.peers.local"];
        let der = certificate_for(Some("m1"), &sans);
        assert_eq!(
            alt_names(&der).map(|n| n.len()),
            Some(4),
            "{:?}",
            alt_names(&der)
        );
        for (host, want) in [
            ("10.0.0.1", true),
            ("10.0.0.2", false),
            ("[::1]", true),
            ("ETCD.example.com", true),
            ("m2.peers.local", true),
            ("a.m2.peers.local", false),
            ("peers.local", false),
            ("other.example.com", false),
            ("m1", false),
        ] {
            assert_eq!(matches_host(&der, host), want, "{host}");
        }
        assert_eq!(alt_names(&certificate_for(None, &[])), Some(Vec::new()));
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
