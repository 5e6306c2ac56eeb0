//! The connection side of the online commands: etcdctl 3.5's global flags and `ETCDCTL_*`
//! environment variables, the channel to the first reachable endpoint (plaintext or TLS), the
//! auth token, and the per-command timeout. Before its first connection a command takes
//! etcdctl's client-configuration step (`environment`: shadowed variables, `--debug`).
//!
//! Invariant: every RPC made through [`Client::call`] ends within `--command-timeout`, and
//! every connect within `--dial-timeout`; an `https://` endpoint is never dialed in plaintext.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use oxetcd::config::{parse_duration, TlsFiles};
use oxetcd::net::tls::{ClientTls, Side};
use oxetcd::net::Dialer;
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::AuthenticateRequest;

use super::diagnose::{self, Failure, Target};
use super::print::Format;
use super::CtlError;

/// etcdctl's global flags.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// gRPC endpoints (host:port, or URLs with http:// or https://)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections (a Go duration)
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s",
          value_parser = go_duration)]
    pub dial_timeout: Duration,
    /// timeout for short running commands (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s",
          value_parser = go_duration)]
    pub command_timeout: Duration,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        global = true,
        env = "ETCDCTL_CACERT"
    )]
    pub cacert: Option<PathBuf>,
    /// identify secure client using this TLS certificate file
    #[arg(long = "cert", id = "tls_cert", global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<PathBuf>,
    /// identify secure client using this TLS key file
    #[arg(long = "key", id = "tls_key", global = true, env = "ETCDCTL_KEY")]
    pub key: Option<PathBuf>,
    /// disable transport security for client connections when no TLS flag is given
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = go_bool)]
    pub insecure_transport: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = go_bool)]
    pub insecure_skip_tls_verify: bool,
    /// keepalive time for client connections (a Go duration)
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", default_value = "2s",
          value_parser = go_duration)]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections (a Go duration)
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", default_value = "6s",
          value_parser = go_duration)]
    pub keepalive_timeout: Duration,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include
    /// password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// set the output format (simple, json, table, fields, protobuf)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple",
        value_enum
    )]
    pub write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = go_bool)]
    pub hex: bool,
    /// enable client-side debug logging (prints every global flag on stderr, as
    /// `ETCDCTL_<FLAG>=<value>`, before the command's first connection)
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = go_bool)]
    pub debug: bool,
    /// etcdctl's DNS SRV discovery, which oxetcdctl does not do: refused (see
    /// [`Global::refuse_discovery`]) rather than unknown or ignored.
    #[arg(short = 'd', long = "discovery-srv", global = true, hide = true)]
    pub discovery_srv: Option<String>,
    /// The service name of DNS SRV discovery (refused with `--discovery-srv`).
    #[arg(long = "discovery-srv-name", global = true, hide = true)]
    pub discovery_srv_name: Option<String>,
    /// The `ETCDCTL_*` variables of the flags given on the command line (see `environment`).
    #[arg(skip)]
    pub flags_given: Vec<std::ffi::OsString>,
}

pub fn go_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .map_err(|e| e.to_string())?
        .to_std()
        .ok_or_else(|| format!("negative duration {s:?}"))
}

fn go_bool(s: &str) -> Result<bool, String> {
    oxetcd::config::goparse::parse_bool(s).ok_or_else(|| format!("invalid boolean {s:?}"))
}

/// The refusal of DNS SRV discovery.
pub const NO_DISCOVERY: &str =
    "oxetcdctl does not do DNS SRV discovery; list the members with --endpoints";

impl Global {
    /// `--discovery-srv`, `--discovery-srv-name` (or `ETCDCTL_DISCOVERY_SRV`) refused with
    /// etcdctl's exit code for a bad flag (1): the members must be listed with `--endpoints`.
    pub fn refuse_discovery(&self) -> Result<(), CtlError> {
        let variable = std::env::var_os("ETCDCTL_DISCOVERY_SRV").is_some_and(|v| !v.is_empty());
        if self.discovery_srv.is_some() || self.discovery_srv_name.is_some() || variable {
            return Err(CtlError::general(NO_DISCOVERY));
        }
        Ok(())
    }

    fn tls_requested(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The URL dialed for one `--endpoints` entry: an explicit scheme wins; a bare host:port
    /// gets TLS when a TLS flag is given or `--insecure-transport=false`, as etcdctl does.
    pub fn url(&self, endpoint: &str) -> String {
        if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            return endpoint.to_string();
        }
        let endpoint = endpoint
            .strip_prefix("unix://")
            .or_else(|| endpoint.strip_prefix("unixs://"))
            .unwrap_or(endpoint);
        if self.tls_requested() || !self.insecure_transport {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        }
    }

    /// The TLS settings: when a TLS flag is given, or any server certificate with
    /// `--insecure-skip-tls-verify`; `None` for plaintext.
    fn client_tls(&self) -> Result<Option<ClientTls>, CtlError> {
        let files = TlsFiles {
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            trusted_ca_file: self.cacert.clone(),
            ..TlsFiles::default()
        };
        let tls = if self.insecure_skip_tls_verify {
            Some(ClientTls::load_unverified(&files))
        } else if self.tls_requested() {
            Some(ClientTls::load(&files, Side::Client))
        } else {
            None
        };
        tls.transpose()
            .map_err(|e| CtlError::bad_connection(format!("TLS settings: {e}")))
    }

    /// The dialer: TLS when a TLS flag is given (or an `https://` endpoint with
    /// `--insecure-skip-tls-verify`), with the keep-alive pings of `--keepalive-time/-timeout`.
    fn dialer(&self) -> Result<Dialer, CtlError> {
        let dialer = match self.client_tls()? {
            None => Dialer::plaintext(),
            Some(tls) => Dialer::with_tls(tls),
        };
        Ok(dialer.with_keepalive(self.keepalive_time, self.keepalive_timeout))
    }

    /// What a diagnosis of `endpoint` needs (see `diagnose`); without the TLS settings
    /// unless `with_tls` (then TLS files that fail to load leave the TLS checks out).
    fn target(&self, endpoint: &str, with_tls: bool) -> Target {
        let url = self.url(endpoint);
        let https = url.starts_with("https://");
        let tls = match self.client_tls() {
            Ok(Some(tls)) if https && with_tls => Some(tls.current()),
            _ => None,
        };
        let any_server = match ClientTls::load_unverified(&TlsFiles::default()) {
            Ok(tls) if !https && with_tls => Some(tls.current()),
            _ => None,
        };
        Target {
            address: address(&url),
            https,
            tls,
            any_server,
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            dial_timeout: self.dial_timeout,
        }
    }

    /// The user and password from `--user name[:password]` and `--password`.
    fn credentials(&self) -> Result<Option<(String, String)>, CtlError> {
        let Some(user) = &self.user else {
            if self.password.is_some() {
                return Err(CtlError::bad_args("no user is given with --password"));
            }
            return Ok(None);
        };
        if let Some(password) = &self.password {
            if user.contains(':') {
                return Err(CtlError::bad_args(
                    "If --user includes a password, --password must not be set",
                ));
            }
            return Ok(Some((user.clone(), password.clone())));
        }
        match user.split_once(':') {
            Some((name, password)) => Ok(Some((name.to_string(), password.to_string()))),
            None => {
                let password = read_password()?;
                Ok(Some((user.clone(), password)))
            }
        }
    }
}

/// Reads a password from standard input (etcdctl prompts on the terminal).
fn read_password() -> Result<String, CtlError> {
    eprint!("Password: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CtlError::bad_args(format!("reading the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// One connection to one endpoint (clones share it).
#[derive(Clone)]
pub struct Client {
    pub channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    pub command_timeout: Duration,
    /// What a failed call needs to explain itself: the settings and the endpoint.
    origin: Arc<(Global, String)>,
}

/// Why a client could not be made.
enum DialFailure {
    /// The endpoint did not take a TCP connection.
    Unreachable(Failure),
    /// Anything after that (bad TLS files, authentication).
    Failed(CtlError),
}

impl Client {
    /// A client to the first endpoint that accepts a TCP connection within `--dial-timeout`,
    /// authenticated when `--user` is given. When none does, each endpoint's diagnostic line
    /// comes before etcdctl's `context deadline exceeded`.
    pub async fn connect(global: &Global) -> Result<Client, CtlError> {
        let mut unreachable = Vec::new();
        let mut failed = None;
        for endpoint in &global.endpoints {
            match Client::dial(global, endpoint).await {
                Ok(client) => return Ok(client),
                Err(DialFailure::Unreachable(why)) => unreachable.push((endpoint, why)),
                Err(DialFailure::Failed(e)) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(CtlError::bad_connection(e.message));
        }
        for (endpoint, why) in &unreachable {
            diagnose::warn(endpoint, &why.message());
        }
        Err(CtlError::general(DEADLINE_EXCEEDED))
    }

    /// A client to exactly this endpoint; when it cannot be reached, its diagnostic line
    /// and etcdctl's `context deadline exceeded` (which `endpoint health`, `status` and
    /// `defrag` print in their per-endpoint reports, as etcdctl does).
    pub async fn connect_to(global: &Global, endpoint: &str) -> Result<Client, CtlError> {
        match Client::dial(global, endpoint).await {
            Ok(client) => Ok(client),
            Err(DialFailure::Failed(e)) => Err(e),
            Err(DialFailure::Unreachable(why)) => {
                diagnose::warn(endpoint, &why.message());
                Err(CtlError::general(DEADLINE_EXCEEDED))
            }
        }
    }

    async fn dial(global: &Global, endpoint: &str) -> Result<Client, DialFailure> {
        super::environment::settle(global, false);
        let url = global.url(endpoint);
        let target = global.target(endpoint, false);
        diagnose::connect(&target)
            .await
            .map_err(DialFailure::Unreachable)?;
        let channel = global
            .dialer()
            .map_err(DialFailure::Failed)?
            .lazy_channel(&url, global.dial_timeout)
            .map_err(|e| DialFailure::Failed(CtlError::bad_connection(e.to_string())))?;
        let mut client = Client {
            channel,
            token: None,
            command_timeout: global.command_timeout,
            origin: Arc::new((global.clone(), endpoint.to_string())),
        };
        let credentials = global.credentials().map_err(DialFailure::Failed)?;
        if let Some((name, password)) = credentials {
            let authenticated = client
                .call(
                    |channel, request| async move {
                        AuthClient::new(channel).authenticate(request).await
                    },
                    AuthenticateRequest {
                        name: name.clone(),
                        password,
                    },
                )
                .await;
            let response = match authenticated {
                Ok(response) => response,
                // As clientv3: credentials for a cluster without auth are not an error.
                Err(e) if e.message == "etcdserver: authentication is not enabled" => {
                    return Ok(client)
                }
                Err(e) => {
                    if e.message == AUTH_FAILED {
                        diagnose::warn(
                            endpoint,
                            &format!(
                                "authentication failed for user {name:?}: check the name and \
                                 password given with --user NAME:PASSWORD (or --user NAME \
                                 --password PASSWORD)"
                            ),
                        );
                    }
                    return Err(DialFailure::Failed(e));
                }
            };
            let token = MetadataValue::try_from(response.token.as_str()).map_err(|_| {
                DialFailure::Failed(CtlError::general(
                    "the server sent a token that is not ASCII",
                ))
            })?;
            client.token = Some(token);
        }
        Ok(client)
    }

    /// Makes one RPC with the token attached, bounded by `--command-timeout`; a gRPC error
    /// becomes etcdctl's `Error: <message>`.
    pub async fn call<Req, Resp, F, Fut>(&self, rpc: F, message: Req) -> Result<Resp, CtlError>
    where
        F: FnOnce(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let request = self.request(message);
        match tokio::time::timeout(self.command_timeout, rpc(self.channel.clone(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) if connection_failed(&status) => Err(self.explain().await),
            Ok(Err(status)) => Err(CtlError::from_status(&status)),
            Err(_) => Err(self.explain().await),
        }
    }

    /// A stream's failed opening or message as etcdctl reports it: a connection failure
    /// as [`Client::explain`] does, anything else by its status.
    pub async fn status_error(&self, status: &tonic::Status) -> CtlError {
        if connection_failed(status) {
            return self.explain().await;
        }
        CtlError::from_status(status)
    }

    /// etcdctl's error for a call that could not reach its endpoint, after the diagnostic
    /// line saying why (when a fresh look at the endpoint finds a reason).
    pub async fn explain(&self) -> CtlError {
        let (global, endpoint) = self.origin.as_ref();
        if let Some(why) = diagnose::diagnose(&global.target(endpoint, true)).await {
            diagnose::warn(endpoint, &why.message());
        }
        CtlError::general(DEADLINE_EXCEEDED)
    }

    /// A request carrying the token (for streaming calls that manage their own time).
    pub fn request<Req>(&self, message: Req) -> tonic::Request<Req> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }
}

/// etcdctl's error when its endpoints cannot be reached (its gRPC calls retry until the
/// command timeout; oxetcdctl reports at once, with the same words).
const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// etcd's error for a wrong user name or password.
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";

/// Whether a call failed for want of a connection (tonic's transport error), rather than by
/// the server's answer.
fn connection_failed(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    status.source().is_some()
}

/// `host:port` of a URL.
fn address(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_string()
}

/// An I/O error in Go's words ("connection refused").
pub fn go_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}
