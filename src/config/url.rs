//! Member URLs (`http://host:port`) as etcd's flags accept them, and the socket address a
//! listen URL binds to.
//!
//! Grammar accepted (a strict subset of Go's `net/url` as etcd uses it):
//! ```text
//! url    = scheme "://" host ":" port
//! scheme = "http" | "https" | "unix" | "unixs"          (case-insensitive, stored lower-case)
//! host   = "[" ipv6 "]" | name-or-ipv4                     (may be empty: checked later)
//! port   = 1*5 DIGIT, at most 65535
//! ```
//! Invariant: `Url::to_string()` is the canonical form (lower-case scheme, IPv6 bracketed);
//! member IDs are hashed over exactly this form.
//! Port 0 is accepted, as etcd accepts it: a listen URL with port 0 binds any free port (test
//! harnesses use it; the listener logs the real one), and etcd does not refuse it in advertise
//! URLs either.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// URL scheme accepted by etcd's URL flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
    Unix,
    Unixs,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => "unix",
            Scheme::Unixs => "unixs",
        }
    }

    /// True for the TLS variants (`https`, `unixs`).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Unixs)
    }
}

/// A parsed member URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP literal, IPv6 without brackets; may be empty (`http://:2379`).
    pub host: String,
    pub port: u16,
}

/// Why a URL was rejected; Display matches etcd's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Go's `url.Parse` failure, shown as `parse "<in>": <why>`.
    Parse {
        input: String,
        why: &'static str,
    },
    /// `invalid port ":abc" after host`.
    BadPort {
        input: String,
        port: String,
    },
    BadScheme {
        input: String,
    },
    NotHostPort {
        input: String,
    },
    HasPath {
        input: String,
    },
    /// Query, fragment or user info: Go accepts them, we do not.
    HasExtras {
        input: String,
    },
    /// A port above 65535.
    PortRange {
        input: String,
        port: String,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Parse { input, why } => write!(f, "parse {input:?}: {why}"),
            UrlError::BadPort { input, port } => {
                write!(f, "parse {input:?}: invalid port \":{port}\" after host")
            }
            UrlError::BadScheme { input } => {
                write!(f, "URL scheme must be http, https, unix, or unixs: {input}")
            }
            UrlError::NotHostPort { input } => {
                write!(
                    f,
                    "URL address does not have the form \"host:port\": {input}"
                )
            }
            UrlError::HasPath { input } => write!(f, "URL must not contain a path: {input}"),
            UrlError::HasExtras { input } => write!(
                f,
                "URL must not contain a query, fragment or user info: {input}"
            ),
            UrlError::PortRange { input, port } => {
                write!(f, "address {port}: invalid port in URL {input}")
            }
        }
    }
}

impl std::error::Error for UrlError {}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

impl Url {
    /// Parses one URL (surrounding spaces ignored, as etcd trims list items).
    pub fn parse(raw: &str) -> Result<Url, UrlError> {
        let input = raw.trim();
        let (scheme_text, rest) = split_scheme(input)?;
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" => Scheme::Unix,
            "unixs" => Scheme::Unixs,
            _ => {
                return Err(UrlError::BadScheme {
                    input: input.into(),
                })
            }
        };
        let Some(after_slashes) = rest.strip_prefix("//") else {
            return Err(UrlError::NotHostPort {
                input: input.into(),
            });
        };
        let auth_end = after_slashes
            .find(['/', '?', '#'])
            .unwrap_or(after_slashes.len());
        let (authority, tail) = after_slashes.split_at(auth_end);
        if authority.contains('@') || tail.starts_with('?') || tail.starts_with('#') {
            return Err(UrlError::HasExtras {
                input: input.into(),
            });
        }
        let (host, port_text) = split_host_port(authority, input)?;
        if !tail.is_empty() {
            return Err(UrlError::HasPath {
                input: input.into(),
            });
        }
        let port = match port_text.parse::<u16>() {
            Ok(p) => p,
            _ => {
                return Err(UrlError::PortRange {
                    input: input.into(),
                    port: port_text.into(),
                })
            }
        };
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// Parses a comma-separated list and sorts it by canonical string, as etcd does.
    pub fn parse_list(raw: &str) -> Result<Vec<Url>, UrlError> {
        let mut urls = raw
            .split(',')
            .map(Url::parse)
            .collect::<Result<Vec<_>, _>>()?;
        sort_urls(&mut urls);
        Ok(urls)
    }

    /// The IP this URL names: an IP literal, or 127.0.0.1 for `localhost` (etcd's special
    /// case); `None` for any other host name.
    pub fn ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.host.parse::<IpAddr>().ok()
    }

    /// Socket address to bind for a listen URL; `None` when the host is not an IP literal
    /// or `localhost` (etcd: "expected IP in URL for binding").
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// `host:port` as written in the URL (IPv6 bracketed), for dialing.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Sorts by canonical string (etcd's `types.URLs.Sort`).
pub fn sort_urls(urls: &mut [Url]) {
    urls.sort_by_cached_key(|u| u.to_string());
}

/// Joins URLs with commas, the way etcd prints URL flags.
pub fn join_urls(urls: &[Url]) -> String {
    urls.iter()
        .map(Url::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits `scheme:rest` following Go's rules: a scheme starts with a letter and continues
/// with letters, digits, `+`, `-`, `.`.
fn split_scheme(input: &str) -> Result<(&str, &str), UrlError> {
    for (i, c) in input.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i > 0 => return Ok((&input[..i], &input[i + 1..])),
            ':' => {
                return Err(UrlError::Parse {
                    input: input.into(),
                    why: "missing protocol scheme",
                })
            }
            _ => break,
        }
    }
    // No scheme: Go parses a path; a colon in its first segment is an error.
    let first_segment = input.split('/').next().unwrap_or("");
    if first_segment.contains(':') {
        return Err(UrlError::Parse {
            input: input.into(),
            why: "first path segment in URL cannot contain colon",
        });
    }
    Err(UrlError::BadScheme {
        input: input.into(),
    })
}

/// Splits an authority into host and port text the way Go's `url.Parse` and
/// `net.SplitHostPort` do together.
fn split_host_port<'a>(authority: &'a str, input: &str) -> Result<(&'a str, &'a str), UrlError> {
    let not_host_port = || UrlError::NotHostPort {
        input: input.into(),
    };
    let (host, after_host) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some(close) = bracketed.find(']') else {
            return Err(UrlError::Parse {
                input: input.into(),
                why: "missing ']' in host",
            });
        };
        let host = &bracketed[..close];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::Parse {
                input: input.into(),
                why: "invalid IPv6 host",
            });
        }
        (host, &bracketed[close + 1..])
    } else {
        match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => return Err(not_host_port()),
        }
    };
    let Some(port) = after_host.strip_prefix(':') else {
        return Err(not_host_port());
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::BadPort {
            input: input.into(),
            port: port.into(),
        });
    }
    if host.contains(':') && !authority.starts_with('[') || port.is_empty() {
        return Err(not_host_port());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        Url::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn parses_and_canonicalises() {
        let u = Url::parse(" HTTP://127.0.0.1:2379 ").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 2379);
        assert_eq!(u.to_string(), "http://127.0.0.1:2379");
        let v6 = Url::parse("https://[::1]:2380").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "https://[::1]:2380");
        assert_eq!(v6.host_port(), "[::1]:2380");
        assert!(v6.scheme.is_tls());
        let unix = Url::parse("unix://localhost:2379").unwrap();
        assert_eq!(unix.scheme, Scheme::Unix);
    }

    #[test]
    fn rejects_with_etcd_texts() {
        assert_eq!(
            err("127.0.0.1:2379"),
            r#"parse "127.0.0.1:2379": first path segment in URL cannot contain colon"#
        );
        assert_eq!(
            err("ftp://127.0.0.1:2379"),
            "URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:2379"
        );
        assert_eq!(err(""), "URL scheme must be http, https, unix, or unixs: ");
        assert_eq!(
            err("abc"),
            "URL scheme must be http, https, unix, or unixs: abc"
        );
        assert_eq!(
            err("localhost:2379"),
            "URL scheme must be http, https, unix, or unixs: localhost:2379"
        );
        assert_eq!(
            err("http://127.0.0.1:2379/foo"),
            "URL must not contain a path: http://127.0.0.1:2379/foo"
        );
        assert_eq!(
            err("http://127.0.0.1:2379/"),
            "URL must not contain a path: http://127.0.0.1:2379/"
        );
        assert_eq!(
            err("http://127.0.0.1"),
            r#"URL address does not have the form "host:port": http://127.0.0.1"#
        );
        assert_eq!(
            err("http://::1:23799"),
            r#"URL address does not have the form "host:port": http://::1:23799"#
        );
        assert_eq!(
            err("http://127.0.0.1:abc"),
            r#"parse "http://127.0.0.1:abc": invalid port ":abc" after host"#
        );
        assert_eq!(
            err("http://[::1:23799"),
            r#"parse "http://[::1:23799": missing ']' in host"#
        );
        assert_eq!(
            err("http://127.0.0.1:99999"),
            "address 99999: invalid port in URL http://127.0.0.1:99999"
        );
        assert!(err("http://127.0.0.1:").contains("host:port"));
        assert!(err("http://u@127.0.0.1:1").contains("user info"));
        assert!(err("http://127.0.0.1:1?x=1").contains("query"));
        assert!(err("://x:1").contains("missing protocol scheme"));
    }

    #[test]
    fn lists_are_sorted_and_keep_duplicates() {
        let urls =
            Url::parse_list("http://[::1]:1,http://127.0.0.1:2, http://127.0.0.1:2").unwrap();
        let shown: Vec<String> = urls.iter().map(Url::to_string).collect();
        assert_eq!(
            shown,
            ["http://127.0.0.1:2", "http://127.0.0.1:2", "http://[::1]:1"]
        );
        assert_eq!(
            join_urls(&urls[..2]),
            "http://127.0.0.1:2,http://127.0.0.1:2"
        );
        assert!(Url::parse_list("http://a:1,").is_err());
    }

    #[test]
    fn bind_addresses() {
        let b = |s: &str| Url::parse(s).unwrap().bind_addr();
        assert_eq!(
            b("http://localhost:2379"),
            Some("127.0.0.1:2379".parse().unwrap())
        );
        assert_eq!(
            b("http://0.0.0.0:2379"),
            Some("0.0.0.0:2379".parse().unwrap())
        );
        assert_eq!(b("http://[::]:2379"), Some("[::]:2379".parse().unwrap()));
        assert_eq!(b("http://[::1]:2380"), Some("[::1]:2380".parse().unwrap()));
        assert_eq!(b("http://example.com:2379"), None);
        // Port 0 (any free port) is accepted as etcd accepts it; it used to be refused with
        // "invalid port in URL".
        assert_eq!(b("http://0.0.0.0:0"), Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(
            b("http://127.0.0.1:0"),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(b("http://:2379"), None);
    }

    proptest::proptest! {
        #[test]
        fn canonical_form_parses_back(
            host in "[a-z][a-z0-9.-]{0,20}|[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            port in proptest::num::u16::ANY,
            tls in proptest::bool::ANY,
        ) {
            let scheme = if tls { Scheme::Https } else { Scheme::Http };
            let u = Url { scheme, host, port };
            proptest::prop_assert_eq!(Url::parse(&u.to_string()), Ok(u));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Url::parse_list(&s);
        }
    }
}
