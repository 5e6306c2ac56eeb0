//! The connection side of the online commands: etcdctl 3.5's global flags and `ETCDCTL_*`
//! environment variables, the channel to the first reachable endpoint (plaintext or TLS), the
//! auth token, and the per-command timeout. Before its first connection a command takes
//! etcdctl's client-configuration step (`environment`: shadowed variables, `--debug`).
//!
//! Invariant: every RPC made through [`Client::call`] ends within `--command-timeout`, and
//! every connect within `--dial-timeout`; an `https://` endpoint is never dialed in plaintext.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use oxetcd::config::{parse_duration, TlsFiles};
use oxetcd::net::tls::{ClientTls, Side};
use oxetcd::net::Dialer;
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::AuthenticateRequest;

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

impl Global {
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

    /// The dialer: TLS when a TLS flag is given (or an `https://` endpoint with
    /// `--insecure-skip-tls-verify`), with the keep-alive pings of `--keepalive-time/-timeout`.
    fn dialer(&self) -> Result<Dialer, CtlError> {
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
        let dialer = match tls {
            None => Dialer::plaintext(),
            Some(tls) => tls
                .map(Dialer::with_tls)
                .map_err(|e| CtlError::bad_connection(format!("TLS settings: {e}")))?,
        };
        Ok(dialer.with_keepalive(self.keepalive_time, self.keepalive_timeout))
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
}

impl Client {
    /// A client to the first endpoint that accepts a TCP connection within `--dial-timeout`,
    /// authenticated when `--user` is given.
    pub async fn connect(global: &Global) -> Result<Client, CtlError> {
        let mut last_error = String::from("no endpoints");
        for endpoint in &global.endpoints {
            match Client::connect_to(global, endpoint).await {
                Ok(client) => return Ok(client),
                Err(e) => last_error = e.message,
            }
        }
        Err(CtlError::bad_connection(last_error))
    }

    /// A client to exactly this endpoint.
    pub async fn connect_to(global: &Global, endpoint: &str) -> Result<Client, CtlError> {
        super::environment::settle(global, false);
        let url = global.url(endpoint);
        let address = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string();
        let probe = tokio::time::timeout(
            global.dial_timeout,
            tokio::net::TcpStream::connect(address.as_str()),
        )
        .await;
        match probe {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(CtlError::bad_connection(format!(
                    "dial tcp {address}: connect: {}",
                    go_io(&e)
                )))
            }
            Err(_) => return Err(CtlError::bad_connection("context deadline exceeded")),
        }
        let channel = global
            .dialer()?
            .lazy_channel(&url, global.dial_timeout)
            .map_err(|e| CtlError::bad_connection(e.to_string()))?;
        let mut client = Client {
            channel,
            token: None,
            command_timeout: global.command_timeout,
        };
        if let Some((name, password)) = global.credentials()? {
            let authenticated = client
                .call(
                    |channel, request| async move {
                        AuthClient::new(channel).authenticate(request).await
                    },
                    AuthenticateRequest { name, password },
                )
                .await;
            let response = match authenticated {
                // As clientv3: credentials for a cluster without auth are not an error.
                Err(e) if e.message == "etcdserver: authentication is not enabled" => {
                    return Ok(client)
                }
                other => other?,
            };
            let token = MetadataValue::try_from(response.token.as_str())
                .map_err(|_| CtlError::general("the server sent a token that is not ASCII"))?;
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
            Ok(Err(status)) => Err(CtlError::from_status(&status)),
            Err(_) => Err(CtlError::general("context deadline exceeded")),
        }
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

/// An I/O error in Go's words ("connection refused").
fn go_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}
