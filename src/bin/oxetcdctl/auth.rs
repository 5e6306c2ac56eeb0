//! `auth enable|disable|status`, `user ...`, `role ...`: etcdctl 3.5's auth management
//! commands, arguments, prompts and outputs. As etcdctl does, `auth enable` creates the root
//! role and grants it to the root user when the server says the root role is missing.
//!
//! Passwords are read from standard input (one line each; `--interactive` asks twice and
//! compares, as etcdctl asks on its terminal) or given with `--new-user-password`; they are
//! sent to the server in the request and never printed.

use std::io::BufRead;

use clap::Subcommand;

use oxetcd::proto::authpb::permission::Type as PermType;
use oxetcd::proto::authpb::{Permission, UserAddOptions};
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::*;

use super::client::{Client, Global};
use super::kv::{prefix_end, unsupported};
use super::print::{self, Format, Obj};
use super::CtlError;

fn go_bool(s: &str) -> Result<bool, String> {
    oxetcd::config::goparse::parse_bool(s).ok_or_else(|| format!("invalid boolean {s:?}"))
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Enables authentication
    Enable,
    /// Disables authentication
    Disable,
    /// Returns authentication status
    Status,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a new user
    Add {
        #[arg(value_name = "USER[:PASSWORD]")]
        args: Vec<String>,
        /// Read password from stdin instead of interactive terminal
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long = "new-user-password", default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long = "no-password")]
        no_password: bool,
    },
    /// Gets detailed information of a user
    Get {
        #[arg(value_name = "USER")]
        args: Vec<String>,
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
    },
    /// Lists all users
    List,
    /// Deletes a user
    Delete {
        #[arg(value_name = "USER")]
        args: Vec<String>,
    },
    /// Changes password of user
    Passwd {
        #[arg(value_name = "USER")]
        args: Vec<String>,
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Grants a role to a user
    GrantRole {
        #[arg(value_name = "USER ROLE")]
        args: Vec<String>,
    },
    /// Revokes a role from a user
    RevokeRole {
        #[arg(value_name = "USER ROLE")]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Adds a new role
    Add {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        #[arg(value_name = "ROLE")]
        args: Vec<String>,
    },
    /// Lists all roles
    List,
    /// Grants a key to a role
    GrantPermission {
        #[arg(value_name = "ROLE PERM KEY [END]")]
        args: Vec<String>,
        /// grant a prefix permission
        #[arg(long)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key
        #[arg(long = "from-key")]
        from_key: bool,
    },
    /// Revokes a key from a role
    RevokePermission {
        #[arg(value_name = "ROLE KEY [END]")]
        args: Vec<String>,
        /// revoke a prefix permission
        #[arg(long)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key
        #[arg(long = "from-key")]
        from_key: bool,
    },
}

fn auth(c: tonic::transport::Channel) -> AuthClient<tonic::transport::Channel> {
    AuthClient::new(c)
}

/// Prints a response: `simple` text, or its JSON (`{"header":...}` plus `fields`).
fn done(
    g: &Global,
    simple: &str,
    header: &Option<ResponseHeader>,
    fields: Obj,
) -> Result<(), CtlError> {
    match g.write_out {
        Format::Simple => println!("{simple}"),
        Format::Json => println!("{}", fields.finish_with_header(header)),
        other => return Err(unsupported(other)),
    }
    Ok(())
}

trait WithHeader {
    fn finish_with_header(self, header: &Option<ResponseHeader>) -> String;
}

impl WithHeader for Obj {
    /// The header first, as in every etcd response.
    fn finish_with_header(self, header: &Option<ResponseHeader>) -> String {
        let rest = self.finish();
        let header = format!("{{\"header\":{}", print::header(header));
        if rest == "{}" {
            header + "}"
        } else {
            format!("{header},{}", &rest[1..])
        }
    }
}

pub async fn run_auth(g: &Global, command: AuthCommand) -> Result<(), CtlError> {
    let client = Client::connect(g).await?;
    match command {
        AuthCommand::Enable => {
            let r = loop {
                let tried = client
                    .call(
                        |c, r| async move { auth(c).auth_enable(r).await },
                        AuthEnableRequest {},
                    )
                    .await;
                match tried {
                    Err(e) if e.message == "etcdserver: root user does not have root role" => {
                        let role = AuthRoleAddRequest {
                            name: "root".into(),
                        };
                        let added = client
                            .call(|c, r| async move { auth(c).role_add(r).await }, role)
                            .await;
                        if let Err(e) = added {
                            if e.message != "etcdserver: role name already exists" {
                                return Err(e);
                            }
                        }
                        let grant = AuthUserGrantRoleRequest {
                            user: "root".into(),
                            role: "root".into(),
                        };
                        client
                            .call(
                                |c, r| async move { auth(c).user_grant_role(r).await },
                                grant,
                            )
                            .await?;
                    }
                    other => break other?,
                }
            };
            done(g, "Authentication Enabled", &r.header, Obj::new())
        }
        AuthCommand::Disable => {
            let r = client
                .call(
                    |c, r| async move { auth(c).auth_disable(r).await },
                    AuthDisableRequest {},
                )
                .await?;
            done(g, "Authentication Disabled", &r.header, Obj::new())
        }
        AuthCommand::Status => {
            let r = client
                .call(
                    |c, r| async move { auth(c).auth_status(r).await },
                    AuthStatusRequest {},
                )
                .await?;
            let text = format!(
                "Authentication Status: {}\nAuthRevision: {}",
                r.enabled, r.auth_revision
            );
            done(
                g,
                &text,
                &r.header,
                Obj::new()
                    .bool("enabled", r.enabled)
                    .u64("authRevision", r.auth_revision),
            )
        }
    }
}

/// Reads one password line; with `confirm`, a second one that must match.
fn read_password(name: &str, interactive: bool) -> Result<String, CtlError> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = |prompt: &str| -> Result<String, CtlError> {
        if interactive {
            eprint!("{prompt}");
        }
        let mut text = String::new();
        input
            .read_line(&mut text)
            .map_err(|e| CtlError::bad_args(format!("reading the password: {e}")))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    };
    let password = line(&format!("Password of {name}: "))?;
    if interactive {
        let again = line(&format!("Type password of {name} again for confirmation: "))?;
        if again != password {
            return Err(CtlError::bad_args("given passwords are different"));
        }
    }
    Ok(password)
}

fn one<'a>(args: &'a [String], missing: &str) -> Result<&'a str, CtlError> {
    match args {
        [x] => Ok(x),
        _ => Err(CtlError::bad_args(missing)),
    }
}

fn two<'a>(args: &'a [String], missing: &str) -> Result<(&'a str, &'a str), CtlError> {
    match args {
        [a, b] => Ok((a, b)),
        _ => Err(CtlError::bad_args(missing)),
    }
}

pub async fn run_user(g: &Global, command: UserCommand) -> Result<(), CtlError> {
    // Argument errors come before any connection, as in etcdctl.
    match &command {
        UserCommand::Add { args, .. } => {
            one(args, "user add command requires user name as its argument")?;
        }
        UserCommand::Get { args, .. } => {
            one(args, "user get command requires user name as its argument")?;
        }
        UserCommand::Delete { args } => {
            one(
                args,
                "user delete command requires user name as its argument",
            )?;
        }
        UserCommand::Passwd { args, .. } => {
            one(
                args,
                "user passwd command requires user name as its argument",
            )?;
        }
        UserCommand::GrantRole { args } => {
            two(
                args,
                "user grant command requires user name and role name as its argument",
            )?;
        }
        UserCommand::RevokeRole { args } => {
            two(
                args,
                "user revoke-role requires user name and role name as its argument",
            )?;
        }
        UserCommand::List => {}
    }
    let client = Client::connect(g).await?;
    match command {
        UserCommand::Add {
            args,
            interactive,
            new_user_password,
            no_password,
        } => {
            let (name, password) = match args[0].split_once(':') {
                Some((name, password)) => (name.to_string(), password.to_string()),
                None if no_password => (args[0].clone(), String::new()),
                None if !new_user_password.is_empty() => (args[0].clone(), new_user_password),
                None => (args[0].clone(), read_password(&args[0], interactive)?),
            };
            let request = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password }),
            };
            let r = client
                .call(|c, r| async move { auth(c).user_add(r).await }, request)
                .await?;
            done(g, &format!("User {name} created"), &r.header, Obj::new())
        }
        UserCommand::Get { args, detail } => {
            let name = args[0].clone();
            let r = client
                .call(
                    |c, r| async move { auth(c).user_get(r).await },
                    AuthUserGetRequest { name: name.clone() },
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    println!("User: {name}");
                    if !detail {
                        let roles: String = r.roles.iter().map(|x| format!(" {x}")).collect();
                        println!("Roles:{roles}");
                        return Ok(());
                    }
                    for role in &r.roles {
                        println!();
                        let got = client
                            .call(
                                |c, r| async move { auth(c).role_get(r).await },
                                AuthRoleGetRequest { role: role.clone() },
                            )
                            .await?;
                        print!("{}", role_text(role, &got.perm));
                    }
                    Ok(())
                }
                Format::Json => {
                    println!(
                        "{}",
                        Obj::new()
                            .strings("roles", &r.roles)
                            .finish_with_header(&r.header)
                    );
                    Ok(())
                }
                other => Err(unsupported(other)),
            }
        }
        UserCommand::List => {
            let r = client
                .call(
                    |c, r| async move { auth(c).user_list(r).await },
                    AuthUserListRequest {},
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    for u in &r.users {
                        println!("{u}");
                    }
                    Ok(())
                }
                Format::Json => {
                    println!(
                        "{}",
                        Obj::new()
                            .strings("users", &r.users)
                            .finish_with_header(&r.header)
                    );
                    Ok(())
                }
                other => Err(unsupported(other)),
            }
        }
        UserCommand::Delete { args } => {
            let name = args[0].clone();
            let r = client
                .call(
                    |c, r| async move { auth(c).user_delete(r).await },
                    AuthUserDeleteRequest { name: name.clone() },
                )
                .await?;
            done(g, &format!("User {name} deleted"), &r.header, Obj::new())
        }
        UserCommand::Passwd { args, interactive } => {
            let name = args[0].clone();
            let password = read_password(&name, interactive)?;
            let r = client
                .call(
                    |c, r| async move { auth(c).user_change_password(r).await },
                    AuthUserChangePasswordRequest { name, password },
                )
                .await?;
            done(g, "Password updated", &r.header, Obj::new())
        }
        UserCommand::GrantRole { args } => {
            let (user, role) = (args[0].clone(), args[1].clone());
            let r = client
                .call(
                    |c, r| async move { auth(c).user_grant_role(r).await },
                    AuthUserGrantRoleRequest {
                        user: user.clone(),
                        role: role.clone(),
                    },
                )
                .await?;
            done(
                g,
                &format!("Role {role} is granted to user {user}"),
                &r.header,
                Obj::new(),
            )
        }
        UserCommand::RevokeRole { args } => {
            let (name, role) = (args[0].clone(), args[1].clone());
            let r = client
                .call(
                    |c, r| async move { auth(c).user_revoke_role(r).await },
                    AuthUserRevokeRoleRequest {
                        name: name.clone(),
                        role: role.clone(),
                    },
                )
                .await?;
            done(
                g,
                &format!("Role {role} is revoked from user {name}"),
                &r.header,
                Obj::new(),
            )
        }
    }
}

/// etcdctl's `role get` text.
fn role_text(role: &str, perms: &[Permission]) -> String {
    let mut out = format!("Role {role}\n");
    let line = |p: &Permission| -> String {
        if p.range_end.is_empty() {
            return format!("\t{}\n", String::from_utf8_lossy(&p.key));
        }
        let key = String::from_utf8_lossy(&p.key);
        let mut text = if p.range_end == [0] {
            format!("\t[{key}, <open ended>")
        } else {
            format!("\t[{key}, {})", String::from_utf8_lossy(&p.range_end))
        };
        if !p.key.is_empty() && prefix_end(&p.key) == p.range_end {
            text.push_str(&format!(" (prefix {key})"));
        }
        text + "\n"
    };
    out.push_str("KV Read:\n");
    for p in perms {
        if p.perm_type == PermType::Read as i32 || p.perm_type == PermType::Readwrite as i32 {
            out.push_str(&line(p));
        }
    }
    out.push_str("KV Write:\n");
    for p in perms {
        if p.perm_type == PermType::Write as i32 || p.perm_type == PermType::Readwrite as i32 {
            out.push_str(&line(p));
        }
    }
    out
}

/// The key and range end of a permission command: `KEY [END]`, `--prefix`, `--from-key`.
fn permission_range(
    key: &str,
    end: Option<&String>,
    prefix: bool,
    from_key: bool,
) -> Result<Vec<u8>, CtlError> {
    if prefix && from_key {
        return Err(CtlError::bad_args(
            "--from-key and --prefix flags are mutually exclusive",
        ));
    }
    if let Some(end) = end {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` \
                 is set",
            ));
        }
        return Ok(end.as_bytes().to_vec());
    }
    if prefix {
        return Ok(if key.is_empty() {
            vec![0]
        } else {
            prefix_end(key.as_bytes())
        });
    }
    if from_key {
        return Ok(vec![0]);
    }
    Ok(Vec::new())
}

pub async fn run_role(g: &Global, command: RoleCommand) -> Result<(), CtlError> {
    match &command {
        RoleCommand::Add { args } => {
            one(args, "role add command requires role name as its argument")?;
        }
        RoleCommand::Delete { args } => {
            one(
                args,
                "role delete command requires role name as its argument",
            )?;
        }
        RoleCommand::Get { args } => {
            one(args, "role get command requires role name as its argument")?;
        }
        RoleCommand::GrantPermission { args, .. } => {
            if args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] \
                     as its argument",
                ));
            }
        }
        RoleCommand::RevokePermission { args, .. } => {
            if args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its \
                     argument",
                ));
            }
        }
        RoleCommand::List => {}
    }
    let client = Client::connect(g).await?;
    match command {
        RoleCommand::Add { args } => {
            let name = args[0].clone();
            let r = client
                .call(
                    |c, r| async move { auth(c).role_add(r).await },
                    AuthRoleAddRequest { name: name.clone() },
                )
                .await?;
            done(g, &format!("Role {name} created"), &r.header, Obj::new())
        }
        RoleCommand::Delete { args } => {
            let role = args[0].clone();
            let r = client
                .call(
                    |c, r| async move { auth(c).role_delete(r).await },
                    AuthRoleDeleteRequest { role: role.clone() },
                )
                .await?;
            done(g, &format!("Role {role} deleted"), &r.header, Obj::new())
        }
        RoleCommand::Get { args } => {
            let role = args[0].clone();
            let r = client
                .call(
                    |c, r| async move { auth(c).role_get(r).await },
                    AuthRoleGetRequest { role: role.clone() },
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    print!("{}", role_text(&role, &r.perm));
                    Ok(())
                }
                Format::Json => {
                    let perms = r
                        .perm
                        .iter()
                        .map(|p| {
                            Obj::new()
                                .i64("permType", i64::from(p.perm_type))
                                .bytes("key", &p.key)
                                .bytes("range_end", &p.range_end)
                                .finish()
                        })
                        .collect();
                    println!(
                        "{}",
                        Obj::new()
                            .objects("perm", perms)
                            .finish_with_header(&r.header)
                    );
                    Ok(())
                }
                other => Err(unsupported(other)),
            }
        }
        RoleCommand::List => {
            let r = client
                .call(
                    |c, r| async move { auth(c).role_list(r).await },
                    AuthRoleListRequest {},
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    for role in &r.roles {
                        println!("{role}");
                    }
                    Ok(())
                }
                Format::Json => {
                    println!(
                        "{}",
                        Obj::new()
                            .strings("roles", &r.roles)
                            .finish_with_header(&r.header)
                    );
                    Ok(())
                }
                other => Err(unsupported(other)),
            }
        }
        RoleCommand::GrantPermission {
            args,
            prefix,
            from_key,
        } => {
            let role = args[0].clone();
            let perm_type = match args[1].to_uppercase().as_str() {
                "READ" => PermType::Read,
                "WRITE" => PermType::Write,
                "READWRITE" => PermType::Readwrite,
                _ => {
                    return Err(CtlError::bad_args(format!(
                        "invalid permission type: {}",
                        args[1]
                    )))
                }
            };
            let range_end = permission_range(&args[2], args.get(3), prefix, from_key)?;
            let request = AuthRoleGrantPermissionRequest {
                name: role.clone(),
                perm: Some(Permission {
                    perm_type: perm_type as i32,
                    key: args[2].as_bytes().to_vec(),
                    range_end,
                }),
            };
            let r = client
                .call(
                    |c, r| async move { auth(c).role_grant_permission(r).await },
                    request,
                )
                .await?;
            done(g, &format!("Role {role} updated"), &r.header, Obj::new())
        }
        RoleCommand::RevokePermission {
            args,
            prefix,
            from_key,
        } => {
            let role = args[0].clone();
            let key = args[1].clone();
            let range_end = permission_range(&key, args.get(2), prefix, from_key)?;
            let request = AuthRoleRevokePermissionRequest {
                role: role.clone(),
                key: key.as_bytes().to_vec(),
                range_end: range_end.clone(),
            };
            let r = client
                .call(
                    |c, r| async move { auth(c).role_revoke_permission(r).await },
                    request,
                )
                .await?;
            let text = if range_end.is_empty() {
                format!("Permission of key {key} is revoked from role {role}")
            } else if range_end == [0] {
                format!("Permission of range [{key}, <open ended>) is revoked from role {role}")
            } else {
                format!(
                    "Permission of range [{key}, {}) is revoked from role {role}",
                    String::from_utf8_lossy(&range_end)
                )
            };
            done(g, &text, &r.header, Obj::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_text_matches_etcdctl() {
        let perm = |t: PermType, key: &str, end: &[u8]| Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        };
        let text = role_text(
            "r1",
            &[
                perm(PermType::Read, "/a", b"/b"),
                perm(PermType::Readwrite, "/b", b"/c"),
                perm(PermType::Write, "/d", &[0]),
                perm(PermType::Read, "/e", b""),
            ],
        );
        // etcdctl 3.5.1 `role get r1` for the same grants.
        assert_eq!(
            text,
            "Role r1\nKV Read:\n\t[/a, /b) (prefix /a)\n\t[/b, /c) (prefix /b)\n\t/e\n\
             KV Write:\n\t[/b, /c) (prefix /b)\n\t[/d, <open ended>\n"
        );
    }
}
