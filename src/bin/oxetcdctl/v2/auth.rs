//! etcdctl 3.4's v2 `user`, `role` and `auth` commands over `/v2/auth`, and the global
//! `--username`.
//!
//! What etcdctl 3.4 does, and so this does:
//! - Requests are the Go client's: `PUT /v2/auth/users/NAME` with `{"user","password","roles":null,
//!   "grant","revoke"}` (empty password, grant and revoke left out) for add, passwd, grant and
//!   revoke; `PUT /v2/auth/roles/NAME` with `{"role","permissions":{"kv":{"read":null,
//!   "write":null}},"grant"|"revoke":{"kv":{...}}}`; `PUT`/`DELETE /v2/auth/enable`.
//! - Only `role add` asks first whether the name exists (`Role NAME already exists`); `user add`
//!   of an existing user changes its password and says `created`, `user passwd` of an unknown
//!   user creates it (the server answers 201, which the client takes as an error with an
//!   empty message).
//! - `--roles` is repeated for several roles; a comma is part of the name.
//! - A missing password is asked for with `speakeasy`'s recipe: the prompt on stdout,
//!   `/bin/stty -echo` run on our own standard streams, one line read from standard input and
//!   trimmed, `/bin/stty echo`, a newline on stdout. When standard input is not a terminal,
//!   stty's own complaint goes to stderr (twice) and the line is read all the same.
//! - Every failure prints the server's `message` (or the client's text) alone and exits 1.

use std::io::{Read as _, Write as _};

use clap::Subcommand;

use super::{keys_client, Failure, Http, Reply, V2Global};
use crate::print::string;

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// add a new user for the etcd cluster
    Add {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// get details for a user
    Get {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// list all current users
    List {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// remove a user for the etcd cluster
    Remove {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// grant roles to an etcd user
    Grant {
        /// List of roles to grant or revoke
        #[arg(long, action = clap::ArgAction::Append)]
        roles: Vec<String>,
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// revoke roles for an etcd user
    Revoke {
        /// List of roles to grant or revoke
        #[arg(long, action = clap::ArgAction::Append)]
        roles: Vec<String>,
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// change password for a user
    Passwd {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
}

/// `role grant` and `role revoke`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct PermissionArgs {
    /// Path granted (or revoked) for the role to access
    #[arg(long, default_value = "")]
    path: String,
    /// Read-only access
    #[arg(long)]
    read: bool,
    /// Write-only access
    #[arg(long)]
    write: bool,
    /// Read-write access
    #[arg(long, visible_alias = "rw")]
    readwrite: bool,
    #[arg(value_name = "ROLE")]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum RoleCommand {
    /// add a new role for the etcd cluster
    Add {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// get details for a role
    Get {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// list all roles
    List {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// remove a role from the etcd cluster
    Remove {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// grant path matches to an etcd role
    Grant(PermissionArgs),
    /// revoke path matches for an etcd role
    Revoke(PermissionArgs),
}

#[derive(Debug, Subcommand)]
pub(super) enum AuthCommand {
    /// enable auth access controls
    Enable {
        #[arg(value_name = "NONE")]
        args: Vec<String>,
    },
    /// disable auth access controls
    Disable {
        #[arg(value_name = "NONE")]
        args: Vec<String>,
    },
}

/// A failure as these commands print it: the text alone on stderr, exit 1.
fn fail(text: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        stderr: format!("{text}\n"),
    }
}

/// The `Authorization` header for `--username` (else `ETCDCTL_USERNAME`): `user:password`, or
/// `user` alone and the password asked for. An empty user name sends no credentials.
pub(super) fn authorization(g: &V2Global) -> Result<Option<String>, String> {
    let flag = g
        .username
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("ETCDCTL_USERNAME").ok())
        .filter(|u| !u.is_empty());
    let Some(flag) = flag else {
        return Ok(None);
    };
    let (user, password) = match flag.split_once(':') {
        Some((user, password)) => (user.to_string(), password.to_string()),
        None => (flag.clone(), ask_password("Password: ")?),
    };
    if user.is_empty() {
        return Ok(None);
    }
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Ok(Some(format!("Basic {token}")))
}

/// Asks for a password as etcdctl does (see the module header).
fn ask_password(prompt: &str) -> Result<String, String> {
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{prompt}");
    let _ = stdout.flush();
    let answer = read_unechoed_line();
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    answer
}

fn read_unechoed_line() -> Result<String, String> {
    stty("-echo").map_err(|e| {
        format!("failed turning off console echo for password entry:\n\tfork/exec /bin/stty: {e}")
    })?;
    let line = read_line();
    let _ = stty("echo");
    line.map(|l| l.trim().to_string())
        .map_err(|e| format!("failed during password entry: {e}"))
}

/// Runs `stty SETTING` on our standard streams and waits for it; its exit status does not
/// matter (etcdctl ignores it too).
fn stty(setting: &str) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    std::process::Command::new("/bin/stty")
        .arg0("stty")
        .arg(setting)
        .status()
        .map(|_| ())
}

/// One line of standard input without its `\n` (or all of it up to the end), read a byte at a
/// time so nothing past the line is taken; at most [`PASSWORD_BYTES_MAX`] bytes are kept.
fn read_line() -> std::io::Result<String> {
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() < PASSWORD_BYTES_MAX => line.push(byte[0]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The longest password line kept; the rest of a longer line is read and dropped.
const PASSWORD_BYTES_MAX: usize = 64 << 10;

/// A client of `/v2/auth` with the command's `--total-timeout` deadline.
struct AuthApi {
    http: Http,
    deadline: tokio::time::Instant,
}

impl AuthApi {
    async fn new(g: &V2Global) -> Result<AuthApi, Failure> {
        let deadline = tokio::time::Instant::now() + g.total_timeout;
        let http = keys_client(g).await?;
        // etcdctl's auth commands name the endpoints once more with --debug.
        super::debug_cluster_endpoints(g, &http);
        Ok(AuthApi { http, deadline })
    }

    /// One request to `/v2/auth/KIND[/NAME]`, the body as JSON.
    async fn call(
        &self,
        method: &str,
        kind: &str,
        name: &str,
        body: Option<String>,
    ) -> Result<Reply, Failure> {
        let path = auth_path(kind, name);
        tokio::time::timeout_at(self.deadline, self.http.call_json(method, path, body))
            .await
            .map_err(|_| fail("context deadline exceeded"))?
            .map_err(|e| fail(e.text()))
    }

    /// A request the client takes as done on one of `ok` statuses, else as the server's error.
    async fn call_ok(
        &self,
        method: &str,
        kind: &str,
        name: &str,
        body: Option<String>,
        ok: &[u16],
    ) -> Result<Reply, Failure> {
        let reply = self.call(method, kind, name, body).await?;
        if ok.contains(&reply.status) {
            Ok(reply)
        } else {
            Err(fail(auth_error(&reply)))
        }
    }
}

/// The Go client's `/v2/auth` URL path: `path.Join` of the prefix, the kind and the name.
fn auth_path(kind: &str, name: &str) -> String {
    let raw = if name.is_empty() {
        format!("/v2/auth/{kind}")
    } else {
        format!("/v2/auth/{kind}/{name}")
    };
    super::clean_path(&raw, false)
}

/// The text of an error answer: its JSON `message`, as the Go client's `authError` reads it.
fn auth_error(reply: &Reply) -> String {
    match serde_json::from_slice::<serde_json::Value>(&reply.body) {
        Ok(v) => v
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string(),
        Err(_) => go_json_error(&reply.body),
    }
}

/// What Go's `encoding/json` says of a body that is not JSON.
fn go_json_error(body: &[u8]) -> String {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => "unexpected end of JSON input".to_string(),
        Some(&b) => format!(
            "invalid character '{}' looking for beginning of value",
            b as char
        ),
    }
}

fn parse(reply: &Reply) -> Result<serde_json::Value, Failure> {
    serde_json::from_slice(&reply.body).map_err(|_| fail(go_json_error(&reply.body)))
}

/// The one name these commands take, or etcdctl's complaint.
fn one_name<'a>(args: &'a [String], complaint: &str) -> Result<&'a str, Failure> {
    match args {
        [name] => Ok(name.as_str()),
        _ => Err(fail(complaint)),
    }
}

fn no_args(args: &[String]) -> Result<(), Failure> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(fail("No arguments accepted"))
    }
}

/// A JSON array of strings, or `null` for none (Go's nil slice).
fn list_or_null(items: &[String]) -> String {
    if items.is_empty() {
        "null".to_string()
    } else {
        let items: Vec<String> = items.iter().map(|s| string(s)).collect();
        format!("[{}]", items.join(","))
    }
}

/// The Go client's `User` as JSON.
fn user_body(user: &str, password: &str, grant: &[String], revoke: &[String]) -> String {
    let mut out = format!("{{\"user\":{}", string(user));
    if !password.is_empty() {
        out.push_str(&format!(",\"password\":{}", string(password)));
    }
    out.push_str(",\"roles\":null");
    if !grant.is_empty() {
        out.push_str(&format!(",\"grant\":{}", list_or_null(grant)));
    }
    if !revoke.is_empty() {
        out.push_str(&format!(",\"revoke\":{}", list_or_null(revoke)));
    }
    out.push('}');
    out
}

const USER_COMPLAINT: &str = "Please provide a username";
const ROLE_COMPLAINT: &str = "Please provide a role name";

pub(super) async fn user(g: &V2Global, command: UserCommand) -> Result<String, Failure> {
    match command {
        UserCommand::List { args } => {
            no_args(&args)?;
            let api = AuthApi::new(g).await?;
            let reply = api.call_ok("GET", "users", "", None, &[200]).await?;
            let json = parse(&reply)?;
            let mut out = String::new();
            for u in json
                .get("users")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let name = match u {
                    serde_json::Value::String(s) => s.as_str(),
                    other => other.get("user").and_then(|v| v.as_str()).unwrap_or(""),
                };
                out.push_str(&format!("{name}\n"));
            }
            Ok(out)
        }
        UserCommand::Add { args } => {
            let arg = one_name(&args, USER_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            let (name, password) = match arg.split_once(':') {
                Some((name, password)) => (name, password.to_string()),
                None => (
                    arg,
                    ask_password("New password: ")
                        .map_err(|e| fail(format!("Error reading password: {e}")))?,
                ),
            };
            let body = user_body(name, &password, &[], &[]);
            api.call_ok("PUT", "users", name, Some(body), &[200, 201])
                .await?;
            Ok(format!("User {name} created\n"))
        }
        UserCommand::Remove { args } => {
            let name = one_name(&args, USER_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            api.call_ok("DELETE", "users", name, None, &[200, 201])
                .await?;
            Ok(format!("User {name} removed\n"))
        }
        UserCommand::Passwd { args } => {
            let name = one_name(&args, USER_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            let password = ask_password("New password: ")
                .map_err(|e| fail(format!("Error reading password: {e}")))?;
            let body = user_body(name, &password, &[], &[]);
            let reply = api
                .call_ok("PUT", "users", name, Some(body), &[200])
                .await?;
            user_of(&reply)?;
            Ok("Password updated\n".to_string())
        }
        UserCommand::Grant { roles, args } => grant_revoke_user(g, &args, &roles, true).await,
        UserCommand::Revoke { roles, args } => grant_revoke_user(g, &args, &roles, false).await,
        UserCommand::Get { args } => {
            let name = one_name(&args, USER_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            let reply = api.call_ok("GET", "users", name, None, &[200]).await?;
            let (user, roles) = user_of(&reply)?;
            Ok(format!("User: {user}\nRoles: {}\n", roles.join(" ")))
        }
    }
}

async fn grant_revoke_user(
    g: &V2Global,
    args: &[String],
    roles: &[String],
    grant: bool,
) -> Result<String, Failure> {
    if roles.is_empty() {
        return Err(fail("No roles specified; please use `--roles`"));
    }
    let name = one_name(args, USER_COMPLAINT)?;
    let api = AuthApi::new(g).await?;
    let body = if grant {
        user_body(name, "", roles, &[])
    } else {
        user_body(name, "", &[], roles)
    };
    let reply = api
        .call_ok("PUT", "users", name, Some(body), &[200])
        .await?;
    user_of(&reply)?;
    Ok(format!("User {name} updated\n"))
}

/// A user answer as the Go client decodes it: `roles` as strings; where the server sends role
/// objects instead, each one first decodes to an empty string (Go's decoder keeps going past
/// the type error) and the client then appends the objects' names, so a user with roles `a`
/// and `b` has the roles `["", "", "a", "b"]` (which `user get` prints as `Roles:   a b`).
fn user_of(reply: &Reply) -> Result<(String, Vec<String>), Failure> {
    let json = parse(reply)?;
    let user = json
        .get("user")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let items: &[serde_json::Value] = json
        .get("roles")
        .and_then(|v| v.as_array())
        .map_or(&[], Vec::as_slice);
    let mut roles: Vec<String> = items
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect();
    if items.iter().any(|r| !r.is_string()) {
        for r in items {
            roles.push(
                r.get("role")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    Ok((user, roles))
}

pub(super) async fn role(g: &V2Global, command: RoleCommand) -> Result<String, Failure> {
    match command {
        RoleCommand::List { args } => {
            no_args(&args)?;
            let api = AuthApi::new(g).await?;
            let reply = api.call("GET", "roles", "", None).await?;
            // The Go client's role list reports a refusal by its status alone.
            if reply.status != 200 {
                return Err(fail(format!("unexpected status code {}", reply.status)));
            }
            let json = parse(&reply)?;
            let mut out = String::new();
            for r in json
                .get("roles")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let name = match r {
                    serde_json::Value::String(s) => s.as_str(),
                    other => other.get("role").and_then(|v| v.as_str()).unwrap_or(""),
                };
                out.push_str(&format!("{name}\n"));
            }
            Ok(out)
        }
        RoleCommand::Add { args } => {
            let name = one_name(&args, ROLE_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            let current = api.call("GET", "roles", name, None).await?;
            if current.status == 200 && parse(&current).is_ok() {
                return Err(fail(format!("Role {name} already exists")));
            }
            let body = format!(
                "{{\"role\":{},\"permissions\":{}}}",
                string(name),
                permissions_body(&[], &[])
            );
            api.call_ok("PUT", "roles", name, Some(body), &[200, 201])
                .await?;
            Ok(format!("Role {name} created\n"))
        }
        RoleCommand::Remove { args } => {
            let name = one_name(&args, ROLE_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            api.call_ok("DELETE", "roles", name, None, &[200, 201])
                .await?;
            Ok(format!("Role {name} removed\n"))
        }
        RoleCommand::Get { args } => {
            let name = one_name(&args, ROLE_COMPLAINT)?;
            let api = AuthApi::new(g).await?;
            let reply = api.call_ok("GET", "roles", name, None, &[200]).await?;
            let role = Role::of(&parse(&reply)?);
            let mut out = format!("Role: {}\nKV Read:\n", role.name);
            for p in role.permissions.read.iter().flatten() {
                out.push_str(&format!("\t{p}\n"));
            }
            out.push_str("KV Write:\n");
            for p in role.permissions.write.iter().flatten() {
                out.push_str(&format!("\t{p}\n"));
            }
            Ok(out)
        }
        RoleCommand::Grant(p) => grant_revoke_role(g, p, true).await,
        RoleCommand::Revoke(p) => grant_revoke_role(g, p, false).await,
    }
}

/// `{"kv":{"read":...,"write":...}}`.
fn permissions_body(read: &[String], write: &[String]) -> String {
    format!(
        "{{\"kv\":{{\"read\":{},\"write\":{}}}}}",
        list_or_null(read),
        list_or_null(write)
    )
}

/// A role as the Go client decodes it, `None` standing for a missing or `null` list (Go's nil
/// slice, which its `reflect.DeepEqual` tells from an empty one).
#[derive(Debug, PartialEq)]
struct Role {
    name: String,
    permissions: KvLists,
    grant: Option<KvLists>,
    revoke: Option<KvLists>,
}

/// A role's `{"kv":{"read":[...],"write":[...]}}`.
#[derive(Debug, PartialEq)]
struct KvLists {
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
}

impl KvLists {
    fn of(json: Option<&serde_json::Value>) -> KvLists {
        let list = |field: &str| {
            json.and_then(|v| v.get("kv"))
                .and_then(|kv| kv.get(field))
                .and_then(|l| l.as_array())
                .map(|l| {
                    l.iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect()
                })
        };
        KvLists {
            read: list("read"),
            write: list("write"),
        }
    }
}

impl Role {
    fn of(json: &serde_json::Value) -> Role {
        let present = |field: &str| json.get(field).filter(|v| !v.is_null());
        Role {
            name: json
                .get("role")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            permissions: KvLists::of(json.get("permissions")),
            grant: present("grant").map(|v| KvLists::of(Some(v))),
            revoke: present("revoke").map(|v| KvLists::of(Some(v))),
        }
    }
}

async fn grant_revoke_role(
    g: &V2Global,
    p: PermissionArgs,
    grant: bool,
) -> Result<String, Failure> {
    if p.path.is_empty() {
        return Err(fail("No path specified; please use `--path`"));
    }
    let canonical = canonical_url_path(&p.path);
    if canonical != p.path {
        return Err(fail(format!(
            "Not canonical path; please use `--path={canonical}`"
        )));
    }
    if [p.read, p.write, p.readwrite]
        .iter()
        .filter(|b| **b)
        .count()
        != 1
    {
        return Err(fail(
            "Please specify exactly one of --read, --write or --readwrite",
        ));
    }
    let paths = std::slice::from_ref(&p.path);
    let (read, write): (&[String], &[String]) = match (p.read, p.write) {
        (true, _) => (paths, &[]),
        (_, true) => (&[], paths),
        _ => (paths, paths),
    };
    let name = one_name(&p.args, ROLE_COMPLAINT)?;
    let api = AuthApi::new(g).await?;
    let current = api.call_ok("GET", "roles", name, None, &[200]).await?;
    let current = Role::of(&parse(&current)?);
    let body = format!(
        "{{\"role\":{},\"permissions\":{},\"{}\":{}}}",
        string(name),
        permissions_body(&[], &[]),
        if grant { "grant" } else { "revoke" },
        permissions_body(read, write)
    );
    let updated = api
        .call_ok("PUT", "roles", name, Some(body), &[200])
        .await?;
    let updated = Role::of(&parse(&updated)?);
    let mut out = String::new();
    if updated == current {
        // etcdctl prints this without a newline, right before the next line.
        out.push_str(if grant {
            "Role unchanged; already granted"
        } else {
            "Role unchanged; already revoked"
        });
    }
    out.push_str(&format!("Role {name} updated\n"));
    Ok(out)
}

/// etcd's `pathutil.CanonicalURLPath`: rooted, cleaned as Go's `path.Clean` cleans, a trailing
/// slash kept.
fn canonical_url_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let rooted = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in rooted.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut cleaned = format!("/{}", parts.join("/"));
    if rooted.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

pub(super) async fn enable_disable(g: &V2Global, command: AuthCommand) -> Result<String, Failure> {
    let (args, method, done) = match command {
        AuthCommand::Enable { args } => (args, "PUT", "Authentication Enabled\n"),
        AuthCommand::Disable { args } => (args, "DELETE", "Authentication Disabled\n"),
    };
    no_args(&args)?;
    let api = AuthApi::new(g).await?;
    api.call_ok(method, "enable", "", None, &[200, 201]).await?;
    Ok(done.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_canonical_as_etcd_makes_them() {
        for (given, canonical) in [
            ("", "/"),
            ("/a", "/a"),
            ("a", "/a"),
            ("/a/../b", "/b"),
            ("/a//b/", "/a/b/"),
            ("/..", "/"),
            ("/a/./*", "/a/*"),
            ("/", "/"),
        ] {
            assert_eq!(canonical_url_path(given), canonical, "{given:?}");
        }
    }

    #[test]
    fn users_and_roles_go_out_as_the_go_client_encodes_them() {
        assert_eq!(
            user_body("a", "p<", &[], &[]),
            r#"{"user":"a","password":"p\u003c","roles":null}"#
        );
        assert_eq!(
            user_body("a", "", &["r,s".to_string()], &[]),
            r#"{"user":"a","roles":null,"grant":["r,s"]}"#
        );
        assert_eq!(
            permissions_body(&["/x".to_string()], &[]),
            r#"{"kv":{"read":["/x"],"write":null}}"#
        );
        assert_eq!(auth_path("users", "a/../b"), "/v2/auth/users/b");
        assert_eq!(auth_path("enable", ""), "/v2/auth/enable");
    }

    #[test]
    fn role_objects_in_a_user_decode_as_the_go_client_decodes_them() {
        let reply = |body: &str| Reply {
            status: 200,
            etcd_index: None,
            body: body.as_bytes().to_vec(),
        };
        let objects = reply(r#"{"user":"u","roles":[{"role":"a"},{"role":"b"}]}"#);
        let (user, roles) = user_of(&objects).ok().expect("decodes");
        assert_eq!(user, "u");
        assert_eq!(roles, ["", "", "a", "b"]);
        let names = reply(r#"{"user":"u","roles":["a"]}"#);
        assert_eq!(user_of(&names).ok().expect("decodes").1, ["a"]);
    }
}
