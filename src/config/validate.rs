//! etcd's start-up validation of a built `Config` (embed.Config.Validate in etcd 3.5),
//! in etcd's order so the first error reported is the one etcd would report.
//!
//! Invariant: validation only reads the config; it never fills in or corrects values.

use super::error::ConfigError;
use super::url::{join_urls, Scheme, Url};
use super::{Config, ELECTION_TIMEOUT_MS_MAX};

pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    check_bind_urls(&config.listen_peer_urls)?;
    check_bind_urls(&config.listen_client_urls)?;
    check_bind_urls(&config.listen_metrics_urls)?;
    check_host_urls(
        "initial-advertise-peer-urls",
        &config.initial_advertise_peer_urls,
    )?;
    check_host_urls("advertise-client-urls", &config.advertise_client_urls)?;
    check_timing(config.heartbeat_interval_ms, config.election_timeout_ms)?;
    if !config.listen_client_urls.is_empty() && config.advertise_client_urls.is_empty() {
        return Err(ConfigError::AdvertiseClientUrlsRequired);
    }
    Ok(())
}

/// Listen URLs must name an IP literal or `localhost` (unix socket URLs name a file instead).
fn check_bind_urls(urls: &[Url]) -> Result<(), ConfigError> {
    let unix = |u: &Url| matches!(u.scheme, Scheme::Unix | Scheme::Unixs);
    match urls.iter().find(|u| !unix(u) && u.bind_addr().is_none()) {
        Some(u) => Err(ConfigError::BindNotIp { url: u.to_string() }),
        None => Ok(()),
    }
}

/// Advertised URLs must have a host.
fn check_host_urls(flag: &'static str, urls: &[Url]) -> Result<(), ConfigError> {
    match urls.iter().find(|u| u.host.is_empty()) {
        Some(u) => Err(ConfigError::AdvertiseEmptyHost {
            flag,
            urls: join_urls(urls),
            url: u.to_string(),
        }),
        None => Ok(()),
    }
}

/// Heartbeat and election timeout: both positive, election at least five heartbeats and
/// at most `ELECTION_TIMEOUT_MS_MAX`.
pub(super) fn check_timing(heartbeat_ms: u64, election_ms: u64) -> Result<(), ConfigError> {
    if heartbeat_ms == 0 {
        return Err(ConfigError::HeartbeatZero);
    }
    if election_ms == 0 {
        return Err(ConfigError::ElectionZero);
    }
    if heartbeat_ms.saturating_mul(5) > election_ms {
        return Err(ConfigError::ElectionTooShort {
            election_ms,
            heartbeat_ms,
        });
    }
    if election_ms > ELECTION_TIMEOUT_MS_MAX {
        return Err(ConfigError::ElectionTooLong { election_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_rules() {
        assert_eq!(check_timing(100, 1000), Ok(()));
        assert_eq!(check_timing(100, 500), Ok(()));
        assert_eq!(check_timing(1, 50_000), Ok(()));
        assert_eq!(check_timing(0, 1000), Err(ConfigError::HeartbeatZero));
        assert_eq!(check_timing(100, 0), Err(ConfigError::ElectionZero));
        assert_eq!(
            check_timing(100, 499),
            Err(ConfigError::ElectionTooShort {
                election_ms: 499,
                heartbeat_ms: 100
            })
        );
        assert_eq!(
            check_timing(100, 50_001),
            Err(ConfigError::ElectionTooLong {
                election_ms: 50_001
            })
        );
        assert!(check_timing(u64::MAX, 1000).is_err());
    }
}
