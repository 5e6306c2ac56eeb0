//! `ETCDCTL_API=2 oxetcdctl ...` (or `oxetcdctl v2 ...`): etcdctl 3.4's v2 commands over the v2
//! HTTP API (`/v2/keys`, `/v2/members`, `/health`), with its global flags, its three output
//! formats (`simple`, `extended`, `json` — the JSON of the Go client's `Response`), its error
//! lines and exit codes (1 bad arguments, 2 no reachable endpoint, 4 a server error).
//!
//! As etcdctl, every command but `cluster-health` first asks `/v2/members` for the cluster's
//! client URLs and talks to those (`--no-sync` talks to `--endpoints` as given). With
//! `--username` (or `ETCDCTL_USERNAME`) every request carries HTTP basic auth; the `user`,
//! `role` and `auth` commands (the `/v2/auth` API) are in `v2/auth.rs`. With `--debug` each
//! request is printed on stderr first as the cURL command that repeats it, with etcdctl's
//! lines about the endpoint sync around them.
//!
//! Invariant: a response body is read up to [`BODY_BYTES_MAX`]; a larger one is an error, never
//! an unbounded allocation.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::print::{string, Obj};

mod auth;

/// etcdctl v2's exit codes.
mod exit {
    pub const BAD_ARGS: u8 = 1;
    pub const BAD_CONNECTION: u8 = 2;
    pub const SERVER_ERROR: u8 = 4;
    pub const CLUSTER_NOT_HEALTHY: u8 = 5;
}

/// The largest response body accepted (a recursive listing of a big tree stays far below).
const BODY_BYTES_MAX: usize = 256 << 20;

/// etcdctl 3.4's v2 command line.
#[derive(Debug, Parser)]
#[command(
    name = "oxetcdctl",
    about = "A simple command line client for etcd (v2 API)."
)]
pub struct V2Cli {
    #[command(flatten)]
    global: V2Global,
    #[command(subcommand)]
    command: V2Command,
}

#[derive(Debug, Clone, Args)]
struct V2Global {
    /// don't synchronize cluster information before sending request
    #[arg(long = "no-sync", global = true)]
    no_sync: bool,
    /// output response in the given format (`simple`, `extended` or `json`)
    #[arg(short = 'o', long, global = true, default_value = "simple")]
    output: String,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(short = 'C', long, global = true)]
    peers: Option<String>,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// a comma-delimited list of machine addresses in the cluster (default:
    /// "http://127.0.0.1:2379,http://127.0.0.1:4001")
    #[arg(long, global = true)]
    endpoints: Option<String>,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long = "cert-file", global = true, env = "ETCDCTL_CERT_FILE")]
    cert_file: Option<std::path::PathBuf>,
    /// identify HTTPS client using this SSL key file
    #[arg(long = "key-file", global = true, env = "ETCDCTL_KEY_FILE")]
    key_file: Option<std::path::PathBuf>,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long = "ca-file", global = true, env = "ETCDCTL_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// connection timeout per request
    #[arg(long, global = true, default_value = "2s", value_parser = duration)]
    timeout: Duration,
    /// timeout for the command execution (except watch)
    #[arg(long = "total-timeout", global = true, default_value = "5s", value_parser = duration)]
    total_timeout: Duration,
    /// provide username[:password] and prompt if password is not supplied.
    #[arg(short = 'u', long, global = true)]
    username: Option<String>,
    /// output cURL commands which can be used to reproduce the request
    #[arg(long, global = true)]
    debug: bool,
    /// The `Authorization` header `--username` makes, asked for (and its password prompted)
    /// once, when the first client is made, as etcdctl does.
    #[arg(skip)]
    authorization: std::sync::OnceLock<Result<Option<String>, String>>,
}

fn duration(s: &str) -> Result<Duration, String> {
    super::client::go_duration(s)
}

#[derive(Debug, Subcommand)]
enum V2Command {
    /// check the health of the etcd cluster
    ClusterHealth,
    /// make a new key with a given value
    Mk {
        /// create in-order key under directory <key>
        #[arg(long = "in-order")]
        in_order: bool,
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[arg(value_name = "KEY VALUE")]
        args: Vec<String>,
    },
    /// make a new directory
    Mkdir {
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// remove a key or a directory
    Rm {
        /// removes the key if it is an empty directory or a key-value pair
        #[arg(long)]
        dir: bool,
        /// removes the key and all child keys(if it is a directory)
        #[arg(short = 'r', long)]
        recursive: bool,
        /// previous value
        #[arg(long = "with-value", default_value = "")]
        with_value: String,
        /// previous index
        #[arg(long = "with-index", default_value_t = 0)]
        with_index: u64,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// removes the key if it is an empty directory or a key-value pair
    Rmdir {
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// retrieve the value of a key
    Get {
        /// returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// require quorum for get request
        #[arg(short = 'q', long)]
        quorum: bool,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// retrieve a directory
    Ls {
        /// returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// returns all key names recursively for the given path
        #[arg(short = 'r', long)]
        recursive: bool,
        /// append slash (/) to directories
        #[arg(short = 'p')]
        p: bool,
        /// require quorum for get request
        #[arg(short = 'q', long)]
        quorum: bool,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// set the value of a key
    Set {
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        /// previous value
        #[arg(long = "swap-with-value", default_value = "")]
        swap_with_value: String,
        /// previous index
        #[arg(long = "swap-with-index", default_value_t = 0)]
        swap_with_index: u64,
        #[arg(value_name = "KEY VALUE")]
        args: Vec<String>,
    },
    /// create a new directory or update an existing directory TTL
    Setdir {
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// update an existing key with a given value
    Update {
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[arg(value_name = "KEY VALUE")]
        args: Vec<String>,
    },
    /// update an existing directory
    Updatedir {
        /// key time-to-live in seconds
        #[arg(long, default_value_t = 0)]
        ttl: u64,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// watch a key for changes
    Watch {
        /// forever watch a key until CTRL+C
        #[arg(short = 'f', long)]
        forever: bool,
        /// watch after the given index
        #[arg(long = "after-index", default_value_t = 0)]
        after_index: u64,
        /// returns all values for key and child keys
        #[arg(short = 'r', long)]
        recursive: bool,
        #[arg(value_name = "KEY")]
        args: Vec<String>,
    },
    /// watch a key for changes and exec an executable
    ExecWatch {
        /// watch after the given index
        #[arg(long = "after-index", default_value_t = 0)]
        after_index: u64,
        /// watch all values for key and child keys
        #[arg(short = 'r', long)]
        recursive: bool,
        #[arg(
            value_name = "KEY -- COMMAND [ARGS...]",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<String>,
    },
    /// member add, remove and list subcommands
    #[command(subcommand)]
    Member(MemberCommand),
    /// user add, grant and revoke subcommands
    #[command(subcommand)]
    User(auth::UserCommand),
    /// role add, grant and revoke subcommands
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// overall auth controls
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// enumerate existing cluster members
    List,
    /// add a new member to the etcd cluster
    Add {
        #[arg(value_name = "NAME PEER_URL")]
        args: Vec<String>,
    },
    /// remove an existing member from the etcd cluster
    Remove {
        #[arg(value_name = "MEMBER_ID")]
        args: Vec<String>,
    },
    /// update an existing member in the etcd cluster
    Update {
        #[arg(value_name = "MEMBER_ID PEER_URLS")]
        args: Vec<String>,
    },
}

/// A failed command: what goes to stderr and the exit code.
pub struct Failure {
    pub code: u8,
    pub stderr: String,
}

fn bad_args(message: &str) -> Failure {
    Failure {
        code: exit::BAD_ARGS,
        stderr: format!("Error:  {message}\n"),
    }
}

/// An answer of the server.
struct Reply {
    status: u16,
    etcd_index: Option<u64>,
    body: Vec<u8>,
}

/// Why no answer came: every endpoint failed, each for its Go-style reason.
struct HttpError(Vec<String>);

impl HttpError {
    /// Go's `ClusterError` text.
    fn text(&self) -> String {
        let mut s = "client: etcd cluster is unavailable or misconfigured".to_string();
        for (i, e) in self.0.iter().enumerate() {
            s.push_str(&format!("; error #{i}: {e}\n"));
        }
        s
    }

    /// Go's `ClusterError.Detail`.
    fn detail(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, e)| format!("error #{i}: {e}\n"))
            .collect()
    }
}

struct Http {
    endpoints: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// `Basic ...` for `--username`, sent with every request.
    authorization: Option<String>,
    /// `--debug`: each request printed on stderr as a cURL command first.
    debug: bool,
}

impl Http {
    /// One request to the first endpoint that answers.
    async fn call(
        &self,
        method: &str,
        path: &str,
        form: Option<String>,
    ) -> Result<Reply, HttpError> {
        let mut errors = Vec::new();
        for endpoint in &self.endpoints {
            match self.call_one(endpoint, method, path, form.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(e) => errors.push(e),
            }
        }
        Err(HttpError(errors))
    }

    /// One request with a JSON body (the members API), to the first endpoint that answers.
    async fn call_json(
        &self,
        method: &str,
        path: String,
        body: Option<String>,
    ) -> Result<Reply, HttpError> {
        let mut errors = Vec::new();
        for endpoint in &self.endpoints {
            let sent = self
                .call_one_typed(endpoint, method, &path, body.clone(), "application/json")
                .await;
            match sent {
                Ok(reply) => return Ok(reply),
                Err(e) => errors.push(e),
            }
        }
        Err(HttpError(errors))
    }

    async fn call_one(
        &self,
        endpoint: &str,
        method: &str,
        path: &str,
        form: Option<String>,
    ) -> Result<Reply, String> {
        self.call_one_typed(
            endpoint,
            method,
            path,
            form,
            "application/x-www-form-urlencoded",
        )
        .await
    }

    /// One request to one endpoint; `body` goes with `content_type`.
    async fn call_one_typed(
        &self,
        endpoint: &str,
        method: &str,
        path: &str,
        form: Option<String>,
        content_type: &str,
    ) -> Result<Reply, String> {
        use http_body_util::BodyExt as _;
        if self.debug {
            eprintln!("{}", curl_command(endpoint, method, path, form.as_deref()));
        }
        let (https, authority) = match endpoint.split_once("://") {
            Some(("https", rest)) => (true, rest.trim_end_matches('/')),
            Some((_, rest)) => (false, rest.trim_end_matches('/')),
            None => (false, endpoint.trim_end_matches('/')),
        };
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(authority))
            .await
            .map_err(|_| format!("dial tcp {authority}: i/o timeout"))?
            .map_err(|e| format!("dial tcp {authority}: connect: {}", go_io(&e)))?;
        let body = http_body_util::Full::new(bytes::Bytes::from(form.clone().unwrap_or_default()));
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority);
        if form.is_some() {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let request = request.body(body).map_err(|e| e.to_string())?;
        // `--timeout` bounds the wait for an answer's headers, except for a watch (`wait=true`),
        // as the Go client's header timeout does.
        let header_timeout = (!path.contains("wait=true")).then_some(self.timeout);
        let response = if https {
            let Some(tls) = &self.tls else {
                return Err(format!("{endpoint}: https needs --ca-file"));
            };
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("Get {endpoint}: {e}"))?;
            send(stream, request, header_timeout).await?
        } else {
            send(tcp, request, header_timeout).await?
        };
        let status = response.status().as_u16();
        let etcd_index = response
            .headers()
            .get("X-Etcd-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = http_body_util::Limited::new(response.into_body(), BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {endpoint}: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            etcd_index,
            body,
        })
    }
}

/// `--debug`'s line for one request, as the Go client prints it: `cURL Command: curl -X
/// METHOD URL`, then ` -d "BODY"` (Go-quoted) when the request has a body, even an empty one.
fn curl_command(endpoint: &str, method: &str, path: &str, body: Option<&str>) -> String {
    let mut line = format!(
        "cURL Command: curl -X {method} {}{path}",
        endpoint.trim_end_matches('/')
    );
    if let Some(body) = body {
        line.push_str(" -d ");
        line.push_str(&super::print::go_quote(body));
    }
    line
}

/// `--debug`'s line naming the endpoints a client talks to.
fn debug_cluster_endpoints(g: &V2Global, http: &Http) {
    if g.debug {
        eprintln!("Cluster-Endpoints: {}", http.endpoints.join(", "));
    }
}

async fn send<S>(
    stream: S,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
    header_timeout: Option<Duration>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = sender.send_request(request);
    match header_timeout {
        Some(limit) => tokio::time::timeout(limit, answer)
            .await
            .map_err(|_| "context deadline exceeded".to_string())?
            .map_err(|e| e.to_string()),
        None => answer.await.map_err(|e| e.to_string()),
    }
}

fn go_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    }
}

/// Go's `url.QueryEscape` for form and query values.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The Go client's key path: `/v2/keys` + the key, cleaned, a trailing slash kept.
fn keys_path(key: &str) -> String {
    let raw = if key.starts_with('/') {
        format!("/v2/keys{key}")
    } else {
        format!("/v2/keys/{key}")
    };
    clean_path(&raw, raw.ends_with('/'))
}

/// `raw` cleaned as Go's `path.Clean` cleans it, each segment escaped as Go's URL path is,
/// with a trailing slash when `trailing_slash`.
fn clean_path(raw: &str, trailing_slash: bool) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut path = String::new();
    for p in &parts {
        path.push('/');
        for b in p.bytes() {
            match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
                | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'=' => path.push(b as char),
                _ => path.push_str(&format!("%{b:02X}")),
            }
        }
    }
    if trailing_slash && !path.is_empty() {
        path.push('/');
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// `name=value` pairs escaped and joined as Go's `url.Values.Encode` does (sorted by name),
/// so the requests (and `--debug`'s cURL lines) are the Go client's byte for byte.
fn encode(pairs: &[(&str, String)]) -> String {
    let mut pairs: Vec<&(&str, String)> = pairs.iter().collect();
    pairs.sort_by_key(|(name, _)| *name);
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect();
    items.join("&")
}

fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", encode(pairs))
    }
}

/// The Go client's query of a get: all three options, always.
fn get_query(recursive: bool, sorted: bool, quorum: bool) -> String {
    query(&[
        ("recursive", recursive.to_string()),
        ("sorted", sorted.to_string()),
        ("quorum", quorum.to_string()),
    ])
}

/// The Go client's query of a watch: the index (0 for "from now") and `recursive`, always.
fn watch_query(wait_index: Option<u64>, recursive: bool) -> String {
    query(&[
        ("wait", "true".to_string()),
        ("waitIndex", wait_index.unwrap_or(0).to_string()),
        ("recursive", recursive.to_string()),
    ])
}

/// A v2 store answer in the Go client's `Response` JSON (`action`, `node`, `prevNode`, with
/// the `Node` fields in its order and its `omitempty` rules).
fn node_json(node: Option<&serde_json::Value>) -> String {
    let Some(node) = node.filter(|n| n.is_object()) else {
        return "null".to_string();
    };
    let text = |k: &str| node.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let number = |k: &str| node.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    let nodes = match node.get("nodes").and_then(|v| v.as_array()) {
        Some(children) => {
            let items: Vec<String> = children.iter().map(|c| node_json(Some(c))).collect();
            format!("[{}]", items.join(","))
        }
        None => "null".to_string(),
    };
    let mut obj = Obj::new()
        .str_always("key", text("key"))
        .bool(
            "dir",
            node.get("dir").and_then(|v| v.as_bool()).unwrap_or(false),
        )
        .str_always("value", text("value"))
        .raw("nodes", &nodes)
        .raw("createdIndex", &number("createdIndex").to_string())
        .raw("modifiedIndex", &number("modifiedIndex").to_string());
    if let Some(expiration) = node.get("expiration").and_then(|v| v.as_str()) {
        obj = obj.raw("expiration", &string(expiration));
    }
    obj.i64("ttl", number("ttl")).finish()
}

/// One parsed keys answer.
struct KeysResponse {
    json: serde_json::Value,
    index: u64,
}

impl KeysResponse {
    fn action(&self) -> &str {
        self.json
            .get("action")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    fn node(&self) -> Option<&serde_json::Value> {
        self.json.get("node")
    }

    fn node_field(&self, field: &str) -> String {
        field_text(self.node(), field)
    }

    fn is_dir(&self) -> bool {
        self.node()
            .and_then(|n| n.get("dir"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

fn field_text(node: Option<&serde_json::Value>, field: &str) -> String {
    match node.and_then(|n| n.get(field)) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => match field {
            "createdIndex" | "modifiedIndex" | "ttl" => "0".to_string(),
            _ => String::new(),
        },
    }
}

/// etcdctl's `printResponseKey`.
fn print_response(r: &KeysResponse, format: &str) -> String {
    match format {
        "simple" => {
            if r.action() != "delete" {
                format!("{}\n", r.node_field("value"))
            } else {
                format!(
                    "PrevNode.Value: {}\n",
                    field_text(r.json.get("prevNode"), "value")
                )
            }
        }
        "extended" => {
            let mut out = format!(
                "Key: {}\nCreated-Index: {}\nModified-Index: {}\n",
                r.node_field("key"),
                r.node_field("createdIndex"),
                r.node_field("modifiedIndex")
            );
            if r.json.get("prevNode").is_some_and(|p| p.is_object()) {
                out.push_str(&format!(
                    "PrevNode.Value: {}\n",
                    field_text(r.json.get("prevNode"), "value")
                ));
            }
            out.push_str(&format!(
                "TTL: {}\nIndex: {}\n",
                r.node_field("ttl"),
                r.index
            ));
            if r.action() != "delete" {
                out.push_str(&format!("\n{}\n", r.node_field("value")));
            }
            out
        }
        "json" => format!(
            "{}\n",
            Obj::new()
                .str_always("action", r.action())
                .raw("node", &node_json(r.node()))
                .raw("prevNode", &node_json(r.json.get("prevNode")))
                .finish()
        ),
        other => {
            eprintln!("Unsupported output format: {other}");
            String::new()
        }
    }
}

/// A keys request's failure as etcdctl's `handleError` prints it (`Error:  CODE: MESSAGE
/// (CAUSE) [INDEX]`, whatever the output format: its JSON branch never matches the error
/// values the Go client returns).
fn keys_failure(reply: Option<&Reply>, e: Option<&HttpError>, code: u8) -> Failure {
    if let Some(reply) = reply {
        if let Ok(err) = serde_json::from_slice::<serde_json::Value>(&reply.body) {
            if let Some(error_code) = err.get("errorCode").and_then(|v| v.as_i64()) {
                let message = err.get("message").and_then(|v| v.as_str()).unwrap_or("");
                let cause = err.get("cause").and_then(|v| v.as_str()).unwrap_or("");
                let index = err.get("index").and_then(|v| v.as_u64()).unwrap_or(0);
                return Failure {
                    code,
                    stderr: format!("Error:  {error_code}: {message} ({cause}) [{index}]\n"),
                };
            }
        }
        return Failure {
            code,
            stderr: format!(
                "Error:  unexpected response status {} from the server\n",
                reply.status
            ),
        };
    }
    let e = e.map(|e| (e.text(), e.detail())).unwrap_or_default();
    Failure {
        code,
        stderr: format!("Error:  {}\n{}", e.0, e.1),
    }
}

/// etcdctl's endpoint list: `--endpoints`, `ETCDCTL_ENDPOINTS`, `--endpoint`, ... in that
/// order, a scheme added where missing.
fn endpoints(g: &V2Global) -> Vec<String> {
    let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let list = g
        .endpoints
        .clone()
        .filter(|v| !v.is_empty())
        .or_else(|| from_env("ETCDCTL_ENDPOINTS"))
        .or_else(|| g.endpoint.clone().filter(|v| !v.is_empty()))
        .or_else(|| from_env("ETCDCTL_ENDPOINT"))
        .or_else(|| g.peers.clone().filter(|v| !v.is_empty()))
        .or_else(|| from_env("ETCDCTL_PEERS"))
        .unwrap_or_else(|| "http://127.0.0.1:2379,http://127.0.0.1:4001".to_string());
    list.split(',')
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            }
        })
        .collect()
}

fn http_for(g: &V2Global, endpoints: Vec<String>) -> Result<Http, Failure> {
    let tls = if endpoints.iter().any(|e| e.starts_with("https://")) || g.ca_file.is_some() {
        let files = oxetcd::config::TlsFiles {
            cert_file: g.cert_file.clone(),
            key_file: g.key_file.clone(),
            trusted_ca_file: g.ca_file.clone(),
            ..oxetcd::config::TlsFiles::default()
        };
        Some(
            oxetcd::net::tls::http1_client_config(&files).map_err(|e| Failure {
                code: exit::BAD_ARGS,
                stderr: format!("{e}\n"),
            })?,
        )
    } else {
        None
    };
    let authorization = g
        .authorization
        .get_or_init(|| auth::authorization(g))
        .clone()
        .map_err(|e| Failure {
            code: 1,
            stderr: format!("{e}\n"),
        })?;
    Ok(Http {
        endpoints,
        tls,
        timeout: g.timeout,
        authorization,
        debug: g.debug,
    })
}

/// The members as `/v2/members` lists them.
fn members_of(reply: &Reply) -> Result<Vec<serde_json::Value>, String> {
    let json: serde_json::Value =
        serde_json::from_slice(&reply.body).map_err(|e| format!("bad members answer: {e}"))?;
    Ok(json
        .get("members")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default())
}

fn strings(v: &serde_json::Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(|l| l.as_array())
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A client for the keys commands: synced to the cluster's client URLs unless `--no-sync`.
async fn keys_client(g: &V2Global) -> Result<Http, Failure> {
    let http = http_for(g, endpoints(g))?;
    if g.no_sync {
        debug_cluster_endpoints(g, &http);
        return Ok(http);
    }
    if g.debug {
        eprintln!(
            "start to sync cluster using endpoints({})",
            http.endpoints.join(",")
        );
    }
    let reply =
        match tokio::time::timeout(g.total_timeout, http.call("GET", "/v2/members", None)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(keys_failure(None, Some(&e), exit::BAD_CONNECTION)),
            Err(_) => {
                return Err(Failure {
                    code: exit::BAD_CONNECTION,
                    stderr: "Error:  context deadline exceeded\n".to_string(),
                })
            }
        };
    // etcdctl goes on with the endpoints it was given when the member list is refused (its
    // sync error is neither "no endpoints" nor a connection error).
    if reply.status != 200 {
        if g.debug {
            eprintln!("got endpoints({}) after sync", http.endpoints.join(","));
        }
        debug_cluster_endpoints(g, &http);
        return Ok(http);
    }
    let members = members_of(&reply).map_err(|e| Failure {
        code: exit::SERVER_ERROR,
        stderr: format!("Error:  {e}\n"),
    })?;
    let urls: Vec<String> = members
        .iter()
        .flat_map(|m| strings(m, "clientURLs"))
        .collect();
    if urls.is_empty() {
        return Err(Failure {
            code: exit::SERVER_ERROR,
            stderr: format!(
                "etcd cluster has no published client endpoints.\nTry '--no-sync' if you want \
                 to access non-published client endpoints({}).\nError:  client: no endpoints \
                 available\n",
                http.endpoints.join(",")
            ),
        });
    }
    if g.debug {
        eprintln!("got endpoints({}) after sync", urls.join(","));
    }
    let http = http_for(g, urls)?;
    debug_cluster_endpoints(g, &http);
    Ok(http)
}

async fn keys_call(
    http: &Http,
    method: &str,
    path: String,
    form: Option<String>,
    total: Option<Duration>,
) -> Result<KeysResponse, Failure> {
    let call = http.call(method, &path, form);
    let result = match total {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Failure {
                    code: exit::SERVER_ERROR,
                    stderr: "Error:  context deadline exceeded\n".to_string(),
                })
            }
        },
        None => call.await,
    };
    let reply = result.map_err(|e| keys_failure(None, Some(&e), exit::SERVER_ERROR))?;
    if !(200..300).contains(&reply.status) {
        return Err(keys_failure(Some(&reply), None, exit::SERVER_ERROR));
    }
    let json = serde_json::from_slice(&reply.body).map_err(|e| Failure {
        code: exit::SERVER_ERROR,
        stderr: format!("Error:  {e}\n"),
    })?;
    Ok(KeysResponse {
        json,
        index: reply.etcd_index.unwrap_or(0),
    })
}

fn key_arg(args: &[String]) -> Result<&str, Failure> {
    args.first()
        .map(String::as_str)
        .ok_or_else(|| bad_args("key required"))
}

/// The value argument, or standard input when it is left out (etcdctl's `argOrStdin`).
fn value_arg(args: &[String]) -> Result<String, Failure> {
    if let Some(v) = args.get(1) {
        return Ok(v.clone());
    }
    use std::io::Read as _;
    let mut text = String::new();
    match std::io::stdin().read_to_string(&mut text) {
        Ok(_) if !text.is_empty() => Ok(text),
        _ => Err(bad_args("value required")),
    }
}

/// A set (PUT) with etcdctl's options.
struct SetOptions {
    ttl: u64,
    prev_value: String,
    prev_index: u64,
    prev_exist: Option<bool>,
    dir: bool,
}

fn set_request(key: &str, value: &str, o: &SetOptions) -> (String, String) {
    let mut q = Vec::new();
    if !o.prev_value.is_empty() {
        q.push(("prevValue", o.prev_value.clone()));
    }
    if o.prev_index != 0 {
        q.push(("prevIndex", o.prev_index.to_string()));
    }
    if let Some(exist) = o.prev_exist {
        q.push(("prevExist", exist.to_string()));
    }
    if o.dir {
        q.push(("dir", "true".to_string()));
    }
    let mut form = Vec::new();
    if !o.dir {
        form.push(("value", value.to_string()));
    }
    if o.ttl > 0 {
        form.push(("ttl", o.ttl.to_string()));
    }
    (format!("{}{}", keys_path(key), query(&q)), encode(&form))
}

pub async fn run(cli: V2Cli) -> Result<String, Failure> {
    let g = &cli.global;
    let total = Some(g.total_timeout);
    match cli.command {
        V2Command::ClusterHealth => cluster_health(g).await,
        V2Command::Member(MemberCommand::List) => member_list(g).await,
        V2Command::Member(command) => member_change(g, command).await,
        V2Command::User(command) => auth::user(g, command).await,
        V2Command::Role(command) => auth::role(g, command).await,
        V2Command::Auth(command) => auth::enable_disable(g, command).await,
        V2Command::ExecWatch {
            after_index,
            recursive,
            args,
        } => exec_watch(g, args, after_index, recursive).await,
        V2Command::Get { sort, quorum, args } => {
            let key = key_arg(&args)?;
            let http = keys_client(g).await?;
            let path = format!("{}{}", keys_path(key), get_query(false, sort, quorum));
            let r = keys_call(&http, "GET", path, None, total).await?;
            if r.is_dir() {
                return Err(Failure {
                    code: 1,
                    stderr: format!("{}: is a directory\n", r.node_field("key")),
                });
            }
            Ok(print_response(&r, &g.output))
        }
        V2Command::Ls {
            sort,
            recursive,
            p,
            quorum,
            args,
        } => {
            let key = args.first().map_or("/", String::as_str);
            let http = keys_client(g).await?;
            let path = format!("{}{}", keys_path(key), get_query(recursive, sort, quorum));
            let r = keys_call(&http, "GET", path, None, total).await?;
            if g.output != "simple" {
                return Ok(print_response(&r, &g.output));
            }
            let mut out = String::new();
            if !r.is_dir() {
                out.push_str(&format!("{}\n", r.node_field("key")));
            }
            fn walk(out: &mut String, node: &serde_json::Value, slash: bool) {
                let dir = node.get("dir").and_then(|v| v.as_bool()).unwrap_or(false);
                let key = field_text(Some(node), "key");
                if dir && slash {
                    out.push_str(&format!("{key}/\n"));
                } else {
                    out.push_str(&format!("{key}\n"));
                }
                for child in node
                    .get("nodes")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    walk(out, child, slash);
                }
            }
            let children = r
                .node()
                .and_then(|n| n.get("nodes"))
                .and_then(|v| v.as_array());
            for child in children.into_iter().flatten() {
                walk(&mut out, child, p);
            }
            Ok(out)
        }
        V2Command::Set {
            ttl,
            swap_with_value,
            swap_with_index,
            args,
        } => {
            let key = key_arg(&args)?;
            let value = value_arg(&args)?;
            let options = SetOptions {
                ttl,
                prev_value: swap_with_value,
                prev_index: swap_with_index,
                prev_exist: None,
                dir: false,
            };
            put(g, key, &value, &options, true).await
        }
        V2Command::Mk {
            in_order,
            ttl,
            args,
        } => {
            let key = key_arg(&args)?;
            let value = value_arg(&args)?;
            if in_order {
                let http = keys_client(g).await?;
                let mut form = vec![("value", value.clone())];
                if ttl > 0 {
                    form.push(("ttl", ttl.to_string()));
                }
                let r =
                    keys_call(&http, "POST", keys_path(key), Some(encode(&form)), total).await?;
                return Ok(print_response(&r, &g.output));
            }
            let options = SetOptions {
                ttl,
                prev_value: String::new(),
                prev_index: 0,
                prev_exist: Some(false),
                dir: false,
            };
            put(g, key, &value, &options, true).await
        }
        V2Command::Update { ttl, args } => {
            let key = key_arg(&args)?;
            let value = value_arg(&args)?;
            let options = SetOptions {
                ttl,
                prev_value: String::new(),
                prev_index: 0,
                prev_exist: Some(true),
                dir: false,
            };
            put(g, key, &value, &options, true).await
        }
        V2Command::Mkdir { ttl, args } => dir_command(g, &args, ttl, Some(false)).await,
        V2Command::Setdir { ttl, args } => dir_command(g, &args, ttl, None).await,
        V2Command::Updatedir { ttl, args } => dir_command(g, &args, ttl, Some(true)).await,
        V2Command::Rm {
            dir,
            recursive,
            with_value,
            with_index,
            args,
        } => {
            let key = key_arg(&args)?;
            remove(g, key, dir, recursive, &with_value, with_index).await
        }
        V2Command::Rmdir { args } => {
            let key = key_arg(&args)?;
            remove(g, key, true, false, "", 0).await
        }
        V2Command::Watch {
            forever,
            after_index,
            recursive,
            args,
        } => {
            let key = key_arg(&args)?;
            watch(g, key, forever, after_index, recursive).await
        }
    }
}

/// `mkdir` (create only), `setdir` (create or update) and `updatedir` (update only): a
/// directory PUT, printed only in the extended and JSON formats.
async fn dir_command(
    g: &V2Global,
    args: &[String],
    ttl: u64,
    prev_exist: Option<bool>,
) -> Result<String, Failure> {
    let key = key_arg(args)?;
    let options = SetOptions {
        ttl,
        prev_value: String::new(),
        prev_index: 0,
        prev_exist,
        dir: true,
    };
    put(g, key, "", &options, false).await
}

async fn put(
    g: &V2Global,
    key: &str,
    value: &str,
    options: &SetOptions,
    print: bool,
) -> Result<String, Failure> {
    let http = keys_client(g).await?;
    let (path, form) = set_request(key, value, options);
    let r = keys_call(&http, "PUT", path, Some(form), Some(g.total_timeout)).await?;
    if print || g.output != "simple" {
        Ok(print_response(&r, &g.output))
    } else {
        Ok(String::new())
    }
}

async fn remove(
    g: &V2Global,
    key: &str,
    dir: bool,
    recursive: bool,
    prev_value: &str,
    prev_index: u64,
) -> Result<String, Failure> {
    let http = keys_client(g).await?;
    let mut q = Vec::new();
    if !prev_value.is_empty() {
        q.push(("prevValue", prev_value.to_string()));
    }
    if prev_index != 0 {
        q.push(("prevIndex", prev_index.to_string()));
    }
    if dir {
        q.push(("dir", "true".to_string()));
    }
    if recursive {
        q.push(("recursive", "true".to_string()));
    }
    let path = format!("{}{}", keys_path(key), query(&q));
    let r = keys_call(&http, "DELETE", path, None, Some(g.total_timeout)).await?;
    if !r.is_dir() || g.output != "simple" {
        Ok(print_response(&r, &g.output))
    } else {
        Ok(String::new())
    }
}

async fn watch(
    g: &V2Global,
    key: &str,
    forever: bool,
    after_index: u64,
    recursive: bool,
) -> Result<String, Failure> {
    use std::io::Write as _;
    let http = keys_client(g).await?;
    let mut wait_index = (after_index > 0).then_some(after_index + 1);
    loop {
        let path = format!("{}{}", keys_path(key), watch_query(wait_index, recursive));
        let r = keys_call(&http, "GET", path, None, None).await?;
        let modified: u64 = r.node_field("modifiedIndex").parse().unwrap_or(0);
        wait_index = Some(modified + 1);
        if r.is_dir() {
            continue;
        }
        let mut out = String::new();
        if recursive {
            out.push_str(&format!("[{}] {}\n", r.action(), r.node_field("key")));
        }
        out.push_str(&print_response(&r, &g.output));
        if !forever {
            return Ok(out);
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

/// `exec-watch KEY -- COMMAND ARGS...`: runs the command (without waiting for it) on every
/// change of a file under the key, with `ETCD_WATCH_ACTION`, `ETCD_WATCH_MODIFIED_INDEX`,
/// `ETCD_WATCH_KEY` and `ETCD_WATCH_VALUE` set. Without `--`, etcdctl 3.4 takes the last
/// argument as the key and the others as the command; so does this.
async fn exec_watch(
    g: &V2Global,
    args: Vec<String>,
    after_index: u64,
    recursive: bool,
) -> Result<String, Failure> {
    if args.len() < 2 {
        return Err(bad_args("key and command to exec required"));
    }
    let (key, command) = match args.iter().skip(1).position(|a| a == "--") {
        Some(_) => (args[0].clone(), args[2..].to_vec()),
        None => {
            let (last, rest) = args.split_last().ok_or_else(|| bad_args("key required"))?;
            (last.clone(), rest.to_vec())
        }
    };
    let Some((program, program_args)) = command.split_first() else {
        return Err(bad_args("key and command to exec required"));
    };
    let http = keys_client(g).await?;
    let mut wait_index = (after_index > 0).then_some(after_index + 1);
    loop {
        let path = format!("{}{}", keys_path(&key), watch_query(wait_index, recursive));
        let r = keys_call(&http, "GET", path, None, None).await?;
        let modified = r.node_field("modifiedIndex");
        wait_index = Some(modified.parse::<u64>().unwrap_or(0) + 1);
        if r.is_dir() {
            eprintln!("Ignored dir {} change", r.node_field("key"));
            continue;
        }
        let child = std::process::Command::new(program)
            .args(program_args)
            .env("ETCD_WATCH_ACTION", r.action())
            .env("ETCD_WATCH_MODIFIED_INDEX", &modified)
            .env("ETCD_WATCH_KEY", r.node_field("key"))
            .env("ETCD_WATCH_VALUE", r.node_field("value"))
            .spawn();
        match child {
            // Reaped on its own thread: the watch goes on while the command runs.
            Ok(mut child) => {
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
            }
            Err(e) => {
                return Err(Failure {
                    code: 1,
                    stderr: format!("exec: {program:?}: {e}"),
                })
            }
        }
    }
}

async fn list_members(http: &Http, limit: Duration) -> Result<Vec<serde_json::Value>, String> {
    let reply = tokio::time::timeout(limit, http.call("GET", "/v2/members", None))
        .await
        .map_err(|_| "context deadline exceeded".to_string())?
        .map_err(|e| e.text())?;
    members_of(&reply)
}

async fn send_json(
    http: &Http,
    limit: Duration,
    method: &str,
    path: String,
    body: Option<String>,
) -> Result<Reply, String> {
    tokio::time::timeout(limit, http.call_json(method, path, body))
        .await
        .map_err(|_| "context deadline exceeded".to_string())?
        .map_err(|e| e.text())
}

/// `member add NAME PEER_URL`, `member remove ID`, `member update ID PEER_URLS`, as etcdctl
/// 3.4 prints them (errors as the server's message, exit 1).
async fn member_change(g: &V2Global, command: MemberCommand) -> Result<String, Failure> {
    let fail = |e: String| Failure {
        code: 1,
        stderr: format!("{e}\n"),
    };
    let usage = |text: &str| Failure {
        code: 1,
        stderr: format!("{text}\n"),
    };
    let message_of = |reply: &Reply| -> String {
        serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("unexpected status {}", reply.status))
    };
    let urls_json = |urls: &[&str]| {
        let items: Vec<String> = urls.iter().map(|u| string(u)).collect();
        format!("{{\"peerURLs\":[{}]}}", items.join(","))
    };
    match command {
        MemberCommand::List => member_list(g).await,
        MemberCommand::Add { args } => {
            let [name, url] = args.as_slice() else {
                return Err(usage("Provide a name and a single member peerURL"));
            };
            let http = keys_client(g).await?;
            let reply = send_json(
                &http,
                g.total_timeout,
                "POST",
                "/v2/members".into(),
                Some(urls_json(&[url])),
            )
            .await
            .map_err(fail)?;
            if reply.status != 201 {
                return Err(fail(message_of(&reply)));
            }
            let added: serde_json::Value =
                serde_json::from_slice(&reply.body).map_err(|e| fail(e.to_string()))?;
            let new_id = added.get("id").and_then(|v| v.as_str()).unwrap_or_default();
            let mut out = format!("Added member named {name} with ID {new_id} to cluster\n");
            let members = list_members(&http, g.total_timeout).await.map_err(fail)?;
            let mut conf = Vec::new();
            for m in &members {
                let id = m.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                let member_name = if id == new_id {
                    name.as_str()
                } else {
                    m.get("name").and_then(|v| v.as_str()).unwrap_or_default()
                };
                for u in strings(m, "peerURLs") {
                    conf.push(format!("{member_name}={u}"));
                }
            }
            out.push_str(&format!(
                "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
                super::print::go_quote(name),
                super::print::go_quote(&conf.join(","))
            ));
            Ok(out)
        }
        MemberCommand::Remove { args } => {
            let [id] = args.as_slice() else {
                return Err(usage("Provide a single member ID"));
            };
            let http = keys_client(g).await?;
            let members = list_members(&http, g.total_timeout).await.map_err(|e| {
                fail(format!(
                    "Error while verifying ID against known members: {e}"
                ))
            })?;
            let mut found = false;
            let mut notes = String::new();
            for m in &members {
                let member_id = m.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                let name = m.get("name").and_then(|v| v.as_str()).unwrap_or_default();
                found |= member_id == id;
                if name == id {
                    notes.push_str(&format!(
                        "Found a member named {name}; if this is correct, please use its ID, eg:\n\tetcdctl member remove {member_id}\nFor more details, read the documentation at https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n\n"
                    ));
                }
            }
            if !found {
                return Err(Failure {
                    code: 1,
                    stderr: format!(
                        "{notes}Couldn't find a member in the cluster with an ID of {id}.\n"
                    ),
                });
            }
            eprint!("{notes}");
            let reply = send_json(
                &http,
                g.total_timeout,
                "DELETE",
                format!("/v2/members/{id}"),
                None,
            )
            .await
            .map_err(|e| Failure {
                code: 1,
                stderr: format!("Received an error trying to remove member {id}: {e}"),
            })?;
            if reply.status != 204 {
                return Err(Failure {
                    code: 1,
                    stderr: format!(
                        "Received an error trying to remove member {id}: {}",
                        message_of(&reply)
                    ),
                });
            }
            Ok(format!("Removed member {id} from cluster\n"))
        }
        MemberCommand::Update { args } => {
            let [id, urls] = args.as_slice() else {
                return Err(usage(
                    "Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)",
                ));
            };
            let http = keys_client(g).await?;
            let list: Vec<&str> = urls.split(',').collect();
            let reply = send_json(
                &http,
                g.total_timeout,
                "PUT",
                format!("/v2/members/{id}"),
                Some(urls_json(&list)),
            )
            .await
            .map_err(fail)?;
            if reply.status != 204 {
                return Err(fail(message_of(&reply)));
            }
            Ok(format!("Updated member with ID {id} in cluster\n"))
        }
    }
}

async fn member_list(g: &V2Global) -> Result<String, Failure> {
    let fail = |e: String| Failure {
        code: 1,
        stderr: format!("{e}\n"),
    };
    let http = keys_client(g).await?;
    let deadline = tokio::time::Instant::now() + g.total_timeout;
    let reply = tokio::time::timeout_at(deadline, http.call("GET", "/v2/members", None))
        .await
        .map_err(|_| fail("context deadline exceeded".to_string()))?
        .map_err(|e| fail(e.text()))?;
    let members = members_of(&reply).map_err(fail)?;
    let leader = tokio::time::timeout_at(deadline, http.call("GET", "/v2/members/leader", None))
        .await
        .map_err(|_| fail("Failed to get leader:  context deadline exceeded".to_string()))?
        .map_err(|e| fail(format!("Failed to get leader:  {}", e.text())))?;
    let leader: serde_json::Value = serde_json::from_slice(&leader.body)
        .map_err(|e| fail(format!("Failed to get leader:  {e}")))?;
    let leader_id = leader
        .get("id")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut out = String::new();
    for m in &members {
        let id = m.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        let name = m.get("name").and_then(|v| v.as_str()).unwrap_or_default();
        let peers = strings(m, "peerURLs").join(",");
        if name.is_empty() {
            out.push_str(&format!("{id}[unstarted]: peerURLs={peers}\n"));
        } else {
            out.push_str(&format!(
                "{id}: name={name} peerURLs={peers} clientURLs={} isLeader={}\n",
                strings(m, "clientURLs").join(","),
                id == leader_id
            ));
        }
    }
    Ok(out)
}

async fn cluster_health(g: &V2Global) -> Result<String, Failure> {
    let http = http_for(g, endpoints(g))?;
    debug_cluster_endpoints(g, &http);
    let reply = match http.call("GET", "/v2/members", None).await {
        Ok(reply) => reply,
        Err(e) => {
            println!("cluster may be unhealthy: failed to list members");
            return Err(keys_failure(None, Some(&e), exit::SERVER_ERROR));
        }
    };
    let members = members_of(&reply).map_err(|e| Failure {
        code: exit::SERVER_ERROR,
        stderr: format!("Error:  {e}\n"),
    })?;
    let mut out = String::new();
    let mut healthy = 0usize;
    for m in &members {
        let id = m.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        let urls = strings(m, "clientURLs");
        if urls.is_empty() {
            out.push_str(&format!(
                "member {id} is unreachable: no available published client urls\n"
            ));
            continue;
        }
        let mut checked = false;
        for url in &urls {
            // etcdctl asks `/health` without credentials.
            let one = Http {
                endpoints: vec![url.clone()],
                tls: http.tls.clone(),
                timeout: g.timeout,
                authorization: None,
                // etcdctl's health probe is a plain HTTP client, not printed by --debug.
                debug: false,
            };
            let answer = match one.call_one(url, "GET", "/health", None).await {
                Ok(a) => a,
                Err(e) => {
                    out.push_str(&format!(
                        "failed to check the health of member {id} on {url}: {e}\n"
                    ));
                    continue;
                }
            };
            let health = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("health").cloned());
            let Some(health) = health else {
                out.push_str(&format!(
                    "failed to check the health of member {id} on {url}: unexpected answer\n"
                ));
                continue;
            };
            checked = true;
            if health == serde_json::Value::String("true".into())
                || health == serde_json::Value::Bool(true)
            {
                out.push_str(&format!(
                    "member {id} is healthy: got healthy result from {url}\n"
                ));
                healthy += 1;
            } else {
                out.push_str(&format!(
                    "member {id} is unhealthy: got unhealthy result from {url}\n"
                ));
            }
            break;
        }
        if !checked {
            out.push_str(&format!(
                "member {id} is unreachable: [{}] are all unreachable\n",
                urls.join(" ")
            ));
        }
    }
    if healthy == members.len() {
        out.push_str("cluster is healthy\n");
        Ok(out)
    } else {
        out.push_str(if healthy == 0 {
            "cluster is unavailable\n"
        } else {
            "cluster is degraded\n"
        });
        print!("{out}");
        Err(Failure {
            code: exit::CLUSTER_NOT_HEALTHY,
            stderr: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_cleaned_as_the_go_client_cleans_them() {
        assert_eq!(keys_path("foo"), "/v2/keys/foo");
        assert_eq!(keys_path("/a//b/../c/"), "/v2/keys/a/c/");
        assert_eq!(keys_path("/"), "/v2/keys/");
        assert_eq!(keys_path("a b"), "/v2/keys/a%20b");
    }

    #[test]
    fn form_values_are_query_escaped() {
        assert_eq!(escape("a b&c=d"), "a+b%26c%3Dd");
    }
}
