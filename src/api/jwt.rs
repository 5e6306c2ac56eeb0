//! JWT auth tokens (`--auth-token jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG,ttl=DUR`), in
//! etcd 3.5's format: a JWS in compact form whose header is `{"alg":ALG,"typ":"JWT"}` and whose
//! claims are `{"exp":<unix seconds>,"revision":<auth revision>,"username":<user>}`.
//!
//! Sign methods: HS256/384/512 (the `priv-key` file's bytes are the shared secret), RS256/384/512,
//! PS256/384/512, ES256 (P-256) and ES384 (P-384). etcd 3.5.1 also takes ES512 (P-521); this
//! member refuses it at startup (the crypto library has no P-521). EdDSA, as in 3.5.1, is an
//! invalid sign method. Keys are PEM: RSA keys in PKCS#1 or PKCS#8, EC private keys in SEC1 or
//! PKCS#8, public keys as SubjectPublicKeyInfo (or PKCS#1 for RSA).
//!
//! A member given only `pub-key` verifies tokens but cannot mint them (Authenticate through it
//! fails with etcd's "auth: token signing attempted with verify-only key").
//!
//! Invariant: a token is accepted only if its header names the configured algorithm, its
//!   signature verifies with the configured key, `exp`/`nbf`/`iat` (when present) hold at the
//!   wall clock, and it carries a string `username` and a numeric `revision`. The revision is
//!   checked against the auth store by the caller, like a simple token's.
//! Invariant: key material never reaches a log line or an error text.
//! Not in the simulated build (the simulator runs simple tokens).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// etcd's default token lifetime when `ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// Why the JWT options could not be turned into a token provider; the texts are etcd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtConfigError {
    /// Bad `ttl`, unreadable key file, unknown sign method: etcd logs the detail and fails with
    /// "auth: invalid auth options".
    InvalidOptions(String),
    /// No key usable for the method.
    MissingKey,
    /// A public key that is not the private key's.
    KeyMismatch,
    /// A key that does not parse as the method's kind (Go's jwt package's texts).
    BadKey(&'static str),
    /// A method etcd 3.5.1 takes that this build cannot (ES512).
    Unsupported(&'static str),
}

impl fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtConfigError::InvalidOptions(_) => f.write_str("auth: invalid auth options"),
            JwtConfigError::MissingKey => f.write_str("auth: missing key data"),
            JwtConfigError::KeyMismatch => f.write_str("auth: public and private keys don't match"),
            JwtConfigError::BadKey(what) => f.write_str(what),
            JwtConfigError::Unsupported(why) => f.write_str(why),
        }
    }
}

impl JwtConfigError {
    /// The detail etcd logs before its one-line error ("problem loading JWT options").
    pub fn detail(&self) -> Option<&str> {
        match self {
            JwtConfigError::InvalidOptions(d) => Some(d),
            _ => None,
        }
    }
}

const ERR_RSA_PRIVATE: &str = "Key is not a valid RSA private key";
const ERR_RSA_PUBLIC: &str = "Key is not a valid RSA public key";
const ERR_EC_PRIVATE: &str = "Key is not a valid ECDSA private key";
const ERR_EC_PUBLIC: &str = "Key is not a valid ECDSA public key";
const ERR_NOT_PEM: &str = "Invalid Key: Key must be PEM encoded PKCS1 or PKCS8 private key";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    RsaPss,
    Ec,
}

/// One of the supported `alg` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    name: &'static str,
    family: Family,
    /// 256, 384 or 512.
    bits: u16,
}

const METHODS: &[Method] = &[
    Method {
        name: "HS256",
        family: Family::Hmac,
        bits: 256,
    },
    Method {
        name: "HS384",
        family: Family::Hmac,
        bits: 384,
    },
    Method {
        name: "HS512",
        family: Family::Hmac,
        bits: 512,
    },
    Method {
        name: "RS256",
        family: Family::Rsa,
        bits: 256,
    },
    Method {
        name: "RS384",
        family: Family::Rsa,
        bits: 384,
    },
    Method {
        name: "RS512",
        family: Family::Rsa,
        bits: 512,
    },
    Method {
        name: "PS256",
        family: Family::RsaPss,
        bits: 256,
    },
    Method {
        name: "PS384",
        family: Family::RsaPss,
        bits: 384,
    },
    Method {
        name: "PS512",
        family: Family::RsaPss,
        bits: 512,
    },
    Method {
        name: "ES256",
        family: Family::Ec,
        bits: 256,
    },
    Method {
        name: "ES384",
        family: Family::Ec,
        bits: 384,
    },
    Method {
        name: "ES512",
        family: Family::Ec,
        bits: 512,
    },
];

impl Method {
    pub fn by_name(name: &str) -> Option<Method> {
        METHODS.iter().copied().find(|m| m.name == name)
    }

    pub fn name(self) -> &'static str {
        self.name
    }

    fn rsa_signing(self) -> &'static dyn signature::RsaEncoding {
        match (self.family, self.bits) {
            (Family::Rsa, 256) => &signature::RSA_PKCS1_SHA256,
            (Family::Rsa, 384) => &signature::RSA_PKCS1_SHA384,
            (Family::Rsa, 512) => &signature::RSA_PKCS1_SHA512,
            (_, 256) => &signature::RSA_PSS_SHA256,
            (_, 384) => &signature::RSA_PSS_SHA384,
            _ => &signature::RSA_PSS_SHA512,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match (self.family, self.bits) {
            (Family::Rsa, 256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Family::Rsa, 384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Family::Rsa, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (Family::RsaPss, 256) => &signature::RSA_PSS_2048_8192_SHA256,
            (Family::RsaPss, 384) => &signature::RSA_PSS_2048_8192_SHA384,
            (Family::RsaPss, _) => &signature::RSA_PSS_2048_8192_SHA512,
            (_, 256) => &signature::ECDSA_P256_SHA256_FIXED,
            _ => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn ecdsa_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        if self.bits == 256 {
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self.bits {
            256 => hmac::HMAC_SHA256,
            384 => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        }
    }

    /// The curve OID an EC key must name for this method.
    fn curve_oid(self) -> &'static [u8] {
        if self.bits == 256 {
            OID_P256
        } else {
            OID_P384
        }
    }
}

/// What signs tokens (absent on a verify-only member).
enum Signer {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// What verifies tokens.
enum Verifier {
    Hmac(hmac::Key),
    /// The public key as ring takes it: PKCS#1 RSAPublicKey DER, or the uncompressed EC point.
    Public(Vec<u8>),
}

/// The member's JWT token provider.
pub struct JwtTokens {
    method: Method,
    ttl: Duration,
    signer: Option<Signer>,
    verifier: Verifier,
    rng: SystemRandom,
}

impl fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtTokens")
            .field("method", &self.method.name)
            .field("ttl", &self.ttl)
            .field("verify_only", &self.signer.is_none())
            .finish()
    }
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub username: String,
    pub revision: u64,
}

/// Why signing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// This member has only the public key.
    VerifyOnly,
    /// The crypto library refused (should not happen with a key that loaded).
    Failed,
}

/// Go's `time.ParseDuration` for what a ttl holds: a sequence of decimal numbers with units
/// (ns, us, µs, ms, s, m, h), an optional sign; "0" alone.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let negative = rest.starts_with('-');
    rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        nanos += value * scale;
        rest = tail;
    }
    if negative || !nanos.is_finite() || nanos > u64::MAX as f64 {
        // A token that expires before it is issued, as etcd's would; no such clock in Rust.
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(nanos as u64))
}

impl JwtTokens {
    /// The provider etcd's options describe (`sign-method`, `pub-key`, `priv-key`, `ttl`;
    /// other keys are ignored with a warning, as etcd does).
    pub fn from_options(opts: &BTreeMap<String, String>) -> Result<JwtTokens, JwtConfigError> {
        let get = |k: &str| opts.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let unknown: Vec<&str> = opts
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "sign-method" | "pub-key" | "priv-key" | "ttl"))
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(keys = ?unknown, "unknown JWT options");
        }
        let ttl = match get("ttl") {
            Some(t) => parse_go_duration(t).map_err(JwtConfigError::InvalidOptions)?,
            None => DEFAULT_TTL,
        };
        let read = |k: &str| -> Result<Option<Vec<u8>>, JwtConfigError> {
            match get(k) {
                None => Ok(None),
                Some(path) => std::fs::read(path).map(Some).map_err(|e| {
                    JwtConfigError::InvalidOptions(format!("open {path}: {}", go_io_text(&e)))
                }),
            }
        };
        let public = read("pub-key")?;
        let private = read("priv-key")?;
        let method = get("sign-method")
            .and_then(Method::by_name)
            .ok_or_else(|| {
                JwtConfigError::InvalidOptions("auth: invalid auth signature method".into())
            })?;
        let (signer, verifier) = match method.family {
            Family::Hmac => {
                let secret = private.ok_or(JwtConfigError::MissingKey)?;
                let key = hmac::Key::new(method.hmac(), &secret);
                (Some(Signer::Hmac(key.clone())), Verifier::Hmac(key))
            }
            Family::Rsa | Family::RsaPss => rsa_keys(public.as_deref(), private.as_deref())?,
            Family::Ec => {
                if method.bits == 512 {
                    return Err(JwtConfigError::Unsupported(
                        "sign-method ES512 (P-521) is not supported by this member",
                    ));
                }
                ec_keys(method, public.as_deref(), private.as_deref())?
            }
        };
        Ok(JwtTokens {
            method,
            ttl,
            signer,
            verifier,
            rng: SystemRandom::new(),
        })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn verify_only(&self) -> bool {
        self.signer.is_none()
    }

    /// A token for `username` at auth revision `revision`, expiring `ttl` from now.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, SignError> {
        self.sign_at(username, revision, SystemTime::now())
    }

    fn sign_at(&self, username: &str, revision: u64, now: SystemTime) -> Result<String, SignError> {
        let signer = self.signer.as_ref().ok_or(SignError::VerifyOnly)?;
        let exp =
            unix_seconds(now).saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        // Keys in Go's order (its JSON encoder sorts map keys).
        let header = serde_json::json!({ "alg": self.method.name, "typ": "JWT" });
        let claims = serde_json::json!({ "exp": exp, "revision": revision, "username": username });
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = match signer {
            Signer::Hmac(key) => hmac::sign(key, out.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    self.method.rsa_signing(),
                    &self.rng,
                    out.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| SignError::Failed)?;
                sig
            }
            Signer::Ec(pair) => pair
                .sign(&self.rng, out.as_bytes())
                .map_err(|_| SignError::Failed)?
                .as_ref()
                .to_vec(),
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }

    /// The user and auth revision of a valid token; `None` for anything else (the caller
    /// answers "invalid auth token").
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_at(token, SystemTime::now())
    }

    fn verify_at(&self, token: &str, now: SystemTime) -> Option<Claims> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&decode_segment(h)?).ok()?;
        if header.get("alg").and_then(|a| a.as_str()) != Some(self.method.name) {
            tracing::warn!("failed to parse a JWT token: invalid signing method");
            return None;
        }
        let sig = decode_segment(s)?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        let ok = match &self.verifier {
            Verifier::Hmac(key) => hmac::verify(key, signed, &sig).is_ok(),
            Verifier::Public(public) => {
                signature::UnparsedPublicKey::new(self.method.verification(), public)
                    .verify(signed, &sig)
                    .is_ok()
            }
        };
        if !ok {
            tracing::warn!("failed to parse a JWT token: signature is invalid");
            return None;
        }
        let claims: serde_json::Value = serde_json::from_slice(&decode_segment(c)?).ok()?;
        let now = unix_seconds(now) as f64;
        let number = |k: &str| claims.get(k).map(|v| v.as_f64());
        match number("exp") {
            Some(Some(exp)) if now > exp => {
                tracing::warn!("failed to parse a JWT token: token is expired");
                return None;
            }
            Some(None) => return None,
            _ => {}
        }
        for (k, must_be_past) in [("nbf", true), ("iat", true)] {
            match number(k) {
                Some(Some(t)) if must_be_past && now < t => return None,
                Some(None) => return None,
                _ => {}
            }
        }
        let username = claims.get("username")?.as_str()?.to_string();
        let revision = claims.get("revision")?.as_f64()?;
        if !(revision >= 0.0 && revision.is_finite()) {
            return None;
        }
        Some(Claims {
            username,
            revision: revision as u64,
        })
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A base64url segment, with or without padding (Go's jwt package takes both).
fn decode_segment(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Go's text for a failed open, where it differs from Rust's.
fn go_io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

// ---- keys ----

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// One DER element: tag, contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// DER length bytes for `len`.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

fn der_wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(contents.len(), &mut out);
    out.extend_from_slice(contents);
    out
}

/// The PEM blocks of a file: (label, DER).
fn pem_blocks(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    pem::parse_many(bytes)
        .map(|v| {
            v.into_iter()
                .map(|p| (p.tag().to_string(), p.contents().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// The parts of a SubjectPublicKeyInfo: algorithm OID, parameters (the curve OID for EC), key.
struct Spki<'a> {
    algorithm: &'a [u8],
    curve: Option<&'a [u8]>,
    key: &'a [u8],
}

fn spki(der_bytes: &[u8]) -> Option<Spki<'_>> {
    let (0x30, body, _) = der(der_bytes)? else {
        return None;
    };
    let (0x30, alg, rest) = der(body)? else {
        return None;
    };
    let (0x06, oid, params) = der(alg)? else {
        return None;
    };
    let param = der(params).and_then(|(t, p, _)| (t == 0x06).then_some(p));
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some(Spki {
        algorithm: oid,
        curve: param,
        key,
    })
}

fn rsa_keys(
    public: Option<&[u8]>,
    private: Option<&[u8]>,
) -> Result<(Option<Signer>, Verifier), JwtConfigError> {
    let pair = match private {
        None => None,
        Some(bytes) => {
            let blocks = pem_blocks(bytes);
            let (label, der_bytes) = blocks
                .into_iter()
                .next()
                .ok_or(JwtConfigError::BadKey(ERR_NOT_PEM))?;
            let pair = match label.as_str() {
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der_bytes),
                _ => RsaKeyPair::from_pkcs8(&der_bytes),
            };
            Some(pair.map_err(|_| JwtConfigError::BadKey(ERR_RSA_PRIVATE))?)
        }
    };
    let public = match public {
        None => None,
        Some(bytes) => {
            let (label, der_bytes) = pem_blocks(bytes)
                .into_iter()
                .next()
                .ok_or(JwtConfigError::BadKey(ERR_NOT_PEM))?;
            let key = if label == "RSA PUBLIC KEY" {
                der_bytes
            } else {
                match spki(&der_bytes) {
                    Some(k) if k.algorithm == OID_RSA => k.key.to_vec(),
                    _ => return Err(JwtConfigError::BadKey(ERR_RSA_PUBLIC)),
                }
            };
            Some(key)
        }
    };
    match (pair, public) {
        (None, None) => Err(JwtConfigError::MissingKey),
        (None, Some(public)) => Ok((None, Verifier::Public(public))),
        (Some(pair), public) => {
            let own = pair.public().as_ref().to_vec();
            if public.is_some_and(|p| p != own) {
                return Err(JwtConfigError::KeyMismatch);
            }
            Ok((Some(Signer::Rsa(pair)), Verifier::Public(own)))
        }
    }
}

/// A SEC1 `EC PRIVATE KEY` as PKCS#8, for the method's curve.
fn sec1_to_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let mut alg = der_wrap(0x06, OID_EC_PUBLIC_KEY);
    alg.extend(der_wrap(0x06, curve));
    let mut body = der_wrap(0x02, &[0]);
    body.extend(der_wrap(0x30, &alg));
    body.extend(der_wrap(0x04, sec1));
    der_wrap(0x30, &body)
}

fn ec_keys(
    method: Method,
    public: Option<&[u8]>,
    private: Option<&[u8]>,
) -> Result<(Option<Signer>, Verifier), JwtConfigError> {
    let rng = SystemRandom::new();
    let pair = match private {
        None => None,
        Some(bytes) => {
            // openssl writes the curve parameters in a block of its own before the key.
            let blocks = pem_blocks(bytes);
            let (label, der_bytes) = blocks
                .into_iter()
                .find(|(l, _)| l != "EC PARAMETERS")
                .ok_or(JwtConfigError::BadKey(ERR_NOT_PEM))?;
            let pkcs8 = if label == "EC PRIVATE KEY" {
                sec1_to_pkcs8(&der_bytes, method.curve_oid())
            } else {
                der_bytes
            };
            let pair = EcdsaKeyPair::from_pkcs8(method.ecdsa_signing(), &pkcs8, &rng)
                .map_err(|_| JwtConfigError::BadKey(ERR_EC_PRIVATE))?;
            Some(pair)
        }
    };
    let public = match public {
        None => None,
        Some(bytes) => {
            let (_, der_bytes) = pem_blocks(bytes)
                .into_iter()
                .next()
                .ok_or(JwtConfigError::BadKey(ERR_NOT_PEM))?;
            match spki(&der_bytes) {
                Some(k) if k.algorithm == OID_EC_PUBLIC_KEY => {
                    if k.curve != Some(method.curve_oid()) {
                        return Err(JwtConfigError::BadKey(ERR_EC_PUBLIC));
                    }
                    Some(k.key.to_vec())
                }
                _ => return Err(JwtConfigError::BadKey(ERR_EC_PUBLIC)),
            }
        }
    };
    match (pair, public) {
        (None, None) => Err(JwtConfigError::MissingKey),
        (None, Some(public)) => Ok((None, Verifier::Public(public))),
        (Some(pair), public) => {
            let own = pair.public_key().as_ref().to_vec();
            if public.is_some_and(|p| p != own) {
                return Err(JwtConfigError::KeyMismatch);
            }
            Ok((Some(Signer::Ec(pair)), Verifier::Public(own)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("bogus"),
            Err("time: invalid duration \"bogus\"".to_string())
        );
        assert_eq!(
            parse_go_duration("10"),
            Err("time: missing unit in duration \"10\"".to_string())
        );
    }

    #[test]
    fn an_hmac_token_round_trips_and_expires() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"a shared secret").expect("write");
        let path = secret.to_string_lossy().to_string();
        let t = JwtTokens::from_options(&opts(&[
            ("sign-method", "HS256"),
            ("priv-key", &path),
            ("ttl", "10s"),
        ]))
        .expect("provider");
        let now = SystemTime::now();
        let token = t.sign_at("alice", 7, now).expect("signed");
        let mut parts = token.split('.');
        let header = decode_segment(parts.next().expect("header")).expect("b64");
        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims: serde_json::Value =
            serde_json::from_slice(&decode_segment(parts.next().expect("claims")).expect("b64"))
                .expect("json");
        assert_eq!(claims["username"], "alice");
        assert_eq!(claims["revision"], 7);
        assert_eq!(claims["exp"], unix_seconds(now) + 10);
        assert_eq!(
            t.verify_at(&token, now),
            Some(Claims {
                username: "alice".into(),
                revision: 7
            })
        );
        assert_eq!(t.verify_at(&token, now + Duration::from_secs(11)), None);
        // A flipped payload byte breaks the signature.
        let mut forged = token.clone().into_bytes();
        let i = forged.iter().position(|b| *b == b'.').expect("dot") + 3;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.verify_at(&String::from_utf8(forged).expect("ascii"), now),
            None
        );
        assert_eq!(t.verify_at("not.a.token", now), None);
        assert_eq!(t.verify_at("", now), None);
    }

    #[test]
    fn bad_options_fail_with_etcds_errors() {
        let e = JwtTokens::from_options(&opts(&[("sign-method", "RS256")])).unwrap_err();
        assert_eq!(e.to_string(), "auth: missing key data");
        let e = JwtTokens::from_options(&opts(&[("sign-method", "EdDSA")])).unwrap_err();
        assert_eq!(e.to_string(), "auth: invalid auth options");
        assert_eq!(e.detail(), Some("auth: invalid auth signature method"));
        let e = JwtTokens::from_options(&opts(&[
            ("sign-method", "RS256"),
            ("priv-key", "/nonexistent/key"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.detail(),
            Some("open /nonexistent/key: no such file or directory")
        );
        let e =
            JwtTokens::from_options(&opts(&[("sign-method", "RS256"), ("ttl", "x")])).unwrap_err();
        assert_eq!(e.to_string(), "auth: invalid auth options");
    }
}
