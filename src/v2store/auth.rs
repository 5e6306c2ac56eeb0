//! v2store/auth — etcd 3.4's v2 auth store (`/v2/auth/*`): users (a bcrypt hash and role
//! names), roles (key patterns they may read and write), and whether auth is on. Replicated
//! with the v2 tree through the same log (`V2Request::Auth`), separate from v3 auth as in
//! etcd. Pure: passwords arrive hashed by the member that took the request; checking a
//! password against a hash is the HTTP side's (`http::v2::auth`).
//!
//! etcd keeps these records as v2 store nodes under its internal `/2` directory (`/2/users/*`,
//! `/2/roles/*`, `/2/enabled`); what clients can see of that is kept: every stored change
//! takes one store index, the first change also the four nodes etcd makes for the directory,
//! and their events enter the shared history, where no watch ever matches them (their keys
//! have no leading `/`, see `Event::is_internal`). A change is decided on the applied store
//! as etcd's handler decides it on its reads, with the same errors and statuses.
//!
//! Invariant: the built-in `root` role is never stored (it cannot be created, changed or
//!            deleted); reading user `root` always shows the `root` role.
//! Invariant: `ensured` is set by the first stored change and never cleared (the nodes etcd
//!            makes for its directory cannot be removed through any API).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::event::{push_json_str, Action};

/// The role every user named `root` has, and that may do everything.
pub const ROOT_ROLE: &str = "root";
/// The role of requests without credentials once auth is on.
pub const GUEST_ROLE: &str = "guest";

/// Key patterns of one access kind, as stored: `None` is Go's nil list (JSON `null`), kept
/// apart from an empty list because etcd shows the two differently.
pub type Patterns = Option<Vec<String>>;

/// A role's permissions (etcd's `Permissions.KV`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perms {
    pub read: Patterns,
    pub write: Patterns,
}

impl Perms {
    /// etcd's `Permissions.IsEmpty` of a present value: both lists empty.
    pub fn is_empty(&self) -> bool {
        self.read.as_ref().is_none_or(Vec::is_empty)
            && self.write.as_ref().is_none_or(Vec::is_empty)
    }

    /// `{"kv":{"read":..,"write":..}}`.
    fn push_json(&self, out: &mut String) {
        out.push_str("{\"kv\":{\"read\":");
        push_list(out, &self.read);
        out.push_str(",\"write\":");
        push_list(out, &self.write);
        out.push_str("}}");
    }
}

fn push_list(out: &mut String, list: &Patterns) {
    match list {
        None => out.push_str("null"),
        Some(items) => {
            out.push('[');
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, s);
            }
            out.push(']');
        }
    }
}

/// One stored user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// bcrypt hash of the password.
    pub password_hash: String,
    /// Role names as stored (order kept; `None` is JSON `null`).
    pub roles: Option<Vec<String>>,
}

impl User {
    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().flatten().any(|r| r == role)
    }

    /// The role names (empty when none).
    pub fn role_names(&self) -> &[String] {
        self.roles.as_deref().unwrap_or(&[])
    }
}

/// The answer of a refused auth request: etcd's HTTP status and its `auth: ...` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthError {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: String) -> AuthError {
    AuthError {
        status,
        message: format!("auth: {message}"),
    }
}

/// One v2 auth change, as replicated. Hashes are bcrypt hashes of a non-empty password;
/// `None` stands for an empty (or absent) password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthChange {
    /// PUT of a user naming roles: etcd's `CreateUser`.
    CreateUser {
        name: String,
        password_hash: Option<String>,
        roles: Option<Vec<String>>,
    },
    /// PUT of a user with neither roles nor grants: an update when the user exists (a new
    /// password), else a create (etcd's `CreateOrUpdateUser`); `roles` is `null` or `[]` as
    /// the request gave it, stored so by a create.
    CreateOrUpdateUser {
        name: String,
        password_hash: Option<String>,
        roles: Option<Vec<String>>,
    },
    /// PUT of a user with grants or revokes: etcd's `UpdateUser`.
    UpdateUser {
        name: String,
        password_hash: Option<String>,
        grant: Vec<String>,
        revoke: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    /// PUT of a role without grants or revokes: etcd's `CreateRole` (permissions as given).
    CreateRole {
        name: String,
        perms: Perms,
    },
    /// PUT of a role with grants or revokes: etcd's `UpdateRole`.
    UpdateRole {
        name: String,
        grant: Option<Perms>,
        revoke: Option<Perms>,
    },
    DeleteRole {
        name: String,
    },
    Enable,
    Disable,
}

impl AuthChange {
    /// Bytes the change may add to the data size (for the space quota).
    pub fn cost_bytes(&self) -> u64 {
        let strings = |v: &[String]| v.iter().map(|s| s.len() as u64 + 8).sum::<u64>();
        let perms = |p: &Perms| {
            p.read.as_deref().map_or(0, strings) + p.write.as_deref().map_or(0, strings)
        };
        64 + match self {
            AuthChange::CreateUser {
                name,
                password_hash,
                roles,
            } => {
                name.len() as u64
                    + password_hash.as_ref().map_or(0, |h| h.len() as u64)
                    + roles.as_deref().map_or(0, strings)
            }
            AuthChange::CreateOrUpdateUser {
                name,
                password_hash,
                ..
            } => name.len() as u64 + password_hash.as_ref().map_or(0, |h| h.len() as u64),
            AuthChange::UpdateUser { name, grant, .. } => name.len() as u64 + 64 + strings(grant),
            AuthChange::CreateRole { name, perms: p } => name.len() as u64 + perms(p),
            AuthChange::UpdateRole { name, grant, .. } => {
                name.len() as u64 + grant.as_ref().map_or(0, perms)
            }
            AuthChange::DeleteUser { .. }
            | AuthChange::DeleteRole { .. }
            | AuthChange::Enable
            | AuthChange::Disable => 0,
        }
    }
}

/// What a successful change answers with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthReply {
    /// A user PUT: the user without its password; `created` picks 201 over 200.
    User {
        name: String,
        roles: Option<Vec<String>>,
        created: bool,
    },
    /// A role PUT: the role as created (the request's permissions; 201) or as updated (200).
    Role {
        name: String,
        perms: Perms,
        created: bool,
    },
    /// A delete, enable or disable: an empty 200.
    Done,
}

/// The stored node writes one change made, in order, as etcd's store statistics count them
/// (the action and whether it succeeded).
pub type StoreWrites = Vec<(Action, bool)>;

/// The node a change touches in etcd's store (for the event kept in the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    User(String),
    Role(String),
    Enabled,
}

impl Resource {
    /// The node's path inside etcd's auth directory, without the leading `/` (see the module
    /// header).
    pub fn internal_key(&self) -> String {
        match self {
            Resource::User(n) => format!("2/users/{n}"),
            Resource::Role(n) => format!("2/roles/{n}"),
            Resource::Enabled => "2/enabled".to_string(),
        }
    }
}

/// The nodes etcd makes for its auth directory before the first change, in its order.
pub const DIRECTORY_NODES: [&str; 4] = ["2", "2/users", "2/roles", "2/enabled"];

/// etcd 3.4's v2 auth state. See the module header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Auth {
    enabled: bool,
    /// etcd's `/2`, `/2/users`, `/2/roles` and `/2/enabled` nodes exist.
    ensured: bool,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Perms>,
}

/// The sink a change writes its stored nodes through: the v2 store, which gives each
/// successful write an index and an event.
pub trait NodeWriter {
    /// Makes etcd's four auth directory nodes (`DIRECTORY_NODES`), each a created node.
    fn make_directory(&mut self);
    /// Records a successful write of `resource` with `action`.
    fn write(&mut self, action: Action, resource: Resource);
}

fn root_perms() -> Perms {
    Perms {
        read: Some(vec!["/*".to_string()]),
        write: Some(vec!["/*".to_string()]),
    }
}

/// etcd's `simpleMatch`: a pattern ending in `*` is a prefix, anything else the exact key.
/// An empty pattern matches nothing.
fn simple_match(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => !pattern.is_empty() && key == pattern,
    }
}

/// etcd's `prefixMatch`: only a pattern ending in `*` gives recursive access.
fn prefix_match(pattern: &str, key: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| key.starts_with(prefix))
}

/// The sorted values of a set, `None` when empty (Go's nil slice of an empty set).
fn sorted_values(set: BTreeSet<String>) -> Option<Vec<String>> {
    if set.is_empty() {
        None
    } else {
        Some(set.into_iter().collect())
    }
}

fn grant_list(current: &Patterns, add: &Patterns, kind: &str) -> Result<Patterns, AuthError> {
    let mut set: BTreeSet<String> = current.iter().flatten().cloned().collect();
    for p in add.iter().flatten() {
        if !set.insert(p.clone()) {
            return Err(refuse(
                409,
                format!("Granting duplicate {kind} permission {p}"),
            ));
        }
    }
    Ok(sorted_values(set))
}

fn revoke_list(current: &Patterns, remove: &Patterns) -> Patterns {
    let mut set: BTreeSet<String> = current.iter().flatten().cloned().collect();
    for p in remove.iter().flatten() {
        set.remove(p);
    }
    sorted_values(set)
}

impl Perms {
    /// etcd's `Role.HasKeyAccess` for a non-root role.
    pub fn has_key_access(&self, key: &str, write: bool) -> bool {
        let list = if write { &self.write } else { &self.read };
        list.iter().flatten().any(|p| simple_match(p, key))
    }

    /// etcd's `Role.HasRecursiveAccess` for a non-root role.
    pub fn has_recursive_access(&self, key: &str, write: bool) -> bool {
        let list = if write { &self.write } else { &self.read };
        list.iter().flatten().any(|p| prefix_match(p, key))
    }

    /// etcd's `Role.merge`: grants (refusing duplicates), then revokes (ignoring ungranted).
    fn merge(&self, grant: &Option<Perms>, revoke: &Option<Perms>) -> Result<Perms, AuthError> {
        let mut out = self.clone();
        if let Some(g) = grant {
            out = Perms {
                read: grant_list(&out.read, &g.read, "read")?,
                write: grant_list(&out.write, &g.write, "write")?,
            };
        }
        if let Some(r) = revoke {
            out = Perms {
                read: revoke_list(&out.read, &r.read),
                write: revoke_list(&out.write, &r.write),
            };
        }
        Ok(out)
    }
}

/// A role as `/v2/auth/roles` shows it: `{"role":..,"permissions":{"kv":{..}}}`.
pub fn role_json(name: &str, perms: &Perms) -> String {
    let mut out = String::from("{\"role\":");
    push_json_str(&mut out, name);
    out.push_str(",\"permissions\":");
    perms.push_json(&mut out);
    out.push('}');
    out
}

/// A user PUT's answer: `{"user":..,"roles":[..]|null}`.
pub fn user_json(name: &str, roles: &Option<Vec<String>>) -> String {
    let mut out = String::from("{\"user\":");
    push_json_str(&mut out, name);
    out.push_str(",\"roles\":");
    push_list(&mut out, roles);
    out.push('}');
    out
}

impl V2Auth {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A user as etcd reads it: user `root` always has the `root` role.
    pub fn user(&self, name: &str) -> Option<User> {
        let mut user = self.users.get(name)?.clone();
        if name == "root" && !user.has_role(ROOT_ROLE) {
            user.roles
                .get_or_insert_with(Vec::new)
                .push(ROOT_ROLE.to_string());
        }
        Some(user)
    }

    /// A role's permissions; the built-in `root` role reads and writes `/*`.
    pub fn role(&self, name: &str) -> Option<Perms> {
        if name == ROOT_ROLE {
            return Some(root_perms());
        }
        self.roles.get(name).cloned()
    }

    /// The user names, sorted.
    pub fn user_names(&self) -> impl Iterator<Item = &String> {
        self.users.keys()
    }

    /// The role names with `root`, sorted.
    pub fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.roles.keys().cloned().collect();
        names.push(ROOT_ROLE.to_string());
        names.sort();
        names
    }

    /// Whether `role` (by name) gives access to `key`: etcd's `HasKeyAccess` or, for a
    /// recursive request, `HasRecursiveAccess`. An unknown role gives nothing.
    pub fn role_allows(&self, role: &str, key: &str, write: bool, recursive: bool) -> bool {
        if role == ROOT_ROLE {
            return true;
        }
        match self.roles.get(role) {
            None => false,
            Some(p) if recursive => p.has_recursive_access(key, write),
            Some(p) => p.has_key_access(key, write),
        }
    }

    /// Applies one change: the reply or etcd's refusal, and the node writes it made.
    pub fn apply(
        &mut self,
        change: &AuthChange,
        store: &mut impl NodeWriter,
    ) -> (Result<AuthReply, AuthError>, StoreWrites) {
        let mut writes = StoreWrites::new();
        let result = self.apply_inner(change, store, &mut writes);
        (result, writes)
    }

    /// etcd's `ensureAuthDirectories`, run before any stored change.
    fn ensure(&mut self, store: &mut impl NodeWriter, writes: &mut StoreWrites) {
        if !self.ensured {
            store.make_directory();
            writes.extend(DIRECTORY_NODES.iter().map(|_| (Action::Create, true)));
            self.ensured = true;
        }
    }

    fn apply_inner(
        &mut self,
        change: &AuthChange,
        store: &mut impl NodeWriter,
        writes: &mut StoreWrites,
    ) -> Result<AuthReply, AuthError> {
        match change {
            AuthChange::CreateUser {
                name,
                password_hash,
                roles,
            } => self.create_user(name, password_hash, roles.clone(), store, writes),
            AuthChange::CreateOrUpdateUser {
                name,
                password_hash,
                roles,
            } => {
                if self.users.contains_key(name) {
                    self.update_user(name, password_hash, &[], &[], store, writes)
                } else {
                    let mut reply =
                        self.create_user(name, password_hash, roles.clone(), store, writes)?;
                    if let AuthReply::User { created, .. } = &mut reply {
                        *created = true;
                    }
                    Ok(reply)
                }
            }
            AuthChange::UpdateUser {
                name,
                password_hash,
                grant,
                revoke,
            } => self.update_user(name, password_hash, grant, revoke, store, writes),
            AuthChange::DeleteUser { name } => {
                if self.enabled && name == "root" {
                    return Err(refuse(
                        403,
                        "Cannot delete root user while auth is enabled.".into(),
                    ));
                }
                self.ensure(store, writes);
                if self.users.remove(name).is_none() {
                    writes.push((Action::Delete, false));
                    return Err(refuse(404, format!("User {name} does not exist")));
                }
                writes.push((Action::Delete, true));
                store.write(Action::Delete, Resource::User(name.clone()));
                Ok(AuthReply::Done)
            }
            AuthChange::CreateRole { name, perms } => {
                self.create_role(name, perms, store, writes)?;
                Ok(AuthReply::Role {
                    name: name.clone(),
                    perms: perms.clone(),
                    created: true,
                })
            }
            AuthChange::UpdateRole {
                name,
                grant,
                revoke,
            } => {
                if name == ROOT_ROLE {
                    return Err(root_role_refusal(name));
                }
                let Some(old) = self.roles.get(name) else {
                    return Err(refuse(404, format!("Role {name} does not exist.")));
                };
                let new = old.merge(grant, revoke)?;
                if &new == old {
                    return Err(refuse(
                        400,
                        "Role not updated. Use grant/revoke to update the role.".into(),
                    ));
                }
                self.ensure(store, writes);
                self.roles.insert(name.clone(), new.clone());
                writes.push((Action::Update, true));
                store.write(Action::Update, Resource::Role(name.clone()));
                Ok(AuthReply::Role {
                    name: name.clone(),
                    perms: new,
                    created: false,
                })
            }
            AuthChange::DeleteRole { name } => {
                if name == ROOT_ROLE {
                    return Err(root_role_refusal(name));
                }
                self.ensure(store, writes);
                if self.roles.remove(name).is_none() {
                    writes.push((Action::Delete, false));
                    return Err(refuse(404, format!("Role {name} doesn't exist.")));
                }
                writes.push((Action::Delete, true));
                store.write(Action::Delete, Resource::Role(name.clone()));
                Ok(AuthReply::Done)
            }
            AuthChange::Enable => {
                if self.enabled {
                    return Err(refuse(409, "already enabled".into()));
                }
                if !self.users.contains_key("root") {
                    return Err(refuse(
                        409,
                        "No root user available, please create one".into(),
                    ));
                }
                if !self.roles.contains_key(GUEST_ROLE) {
                    self.create_role(GUEST_ROLE, &root_perms(), store, writes)?;
                }
                self.set_enabled(true, store, writes);
                Ok(AuthReply::Done)
            }
            AuthChange::Disable => {
                if !self.enabled {
                    return Err(refuse(409, "already disabled".into()));
                }
                self.set_enabled(false, store, writes);
                Ok(AuthReply::Done)
            }
        }
    }

    fn set_enabled(&mut self, on: bool, store: &mut impl NodeWriter, writes: &mut StoreWrites) {
        self.ensure(store, writes);
        self.enabled = on;
        writes.push((Action::Update, true));
        store.write(Action::Update, Resource::Enabled);
    }

    fn create_user(
        &mut self,
        name: &str,
        password_hash: &Option<String>,
        mut roles: Option<Vec<String>>,
        store: &mut impl NodeWriter,
        writes: &mut StoreWrites,
    ) -> Result<AuthReply, AuthError> {
        if name == "root" && !roles.iter().flatten().any(|r| r == ROOT_ROLE) {
            roles
                .get_or_insert_with(Vec::new)
                .push(ROOT_ROLE.to_string());
        }
        let Some(hash) = password_hash else {
            return Err(refuse(
                400,
                format!("Cannot create user {name} with an empty password"),
            ));
        };
        self.ensure(store, writes);
        if self.users.contains_key(name) {
            writes.push((Action::Create, false));
            return Err(refuse(409, format!("User {name} already exists.")));
        }
        self.users.insert(
            name.to_string(),
            User {
                password_hash: hash.clone(),
                roles: roles.clone(),
            },
        );
        writes.push((Action::Create, true));
        store.write(Action::Create, Resource::User(name.to_string()));
        Ok(AuthReply::User {
            name: name.to_string(),
            roles,
            created: false,
        })
    }

    fn update_user(
        &mut self,
        name: &str,
        password_hash: &Option<String>,
        grant: &[String],
        revoke: &[String],
        store: &mut impl NodeWriter,
        writes: &mut StoreWrites,
    ) -> Result<AuthReply, AuthError> {
        let Some(old) = self.user(name) else {
            return Err(refuse(404, format!("User {name} does not exist.")));
        };
        let mut roles: BTreeSet<String> = old.role_names().iter().cloned().collect();
        for g in grant {
            if !roles.insert(g.clone()) {
                return Err(refuse(
                    409,
                    format!("Granting duplicate role {g} for user {name}"),
                ));
            }
        }
        for r in revoke {
            if !roles.remove(r) {
                return Err(refuse(
                    409,
                    format!("Revoking ungranted role {r} for user {name}"),
                ));
            }
        }
        let new = User {
            password_hash: password_hash
                .clone()
                .unwrap_or_else(|| old.password_hash.clone()),
            roles: sorted_values(roles),
        };
        if new == old {
            return Err(refuse(
                400,
                "User not updated. Use grant/revoke/password to update the user.".into(),
            ));
        }
        self.ensure(store, writes);
        self.users.insert(name.to_string(), new.clone());
        writes.push((Action::Update, true));
        store.write(Action::Update, Resource::User(name.to_string()));
        Ok(AuthReply::User {
            name: name.to_string(),
            roles: new.roles,
            created: false,
        })
    }

    fn create_role(
        &mut self,
        name: &str,
        perms: &Perms,
        store: &mut impl NodeWriter,
        writes: &mut StoreWrites,
    ) -> Result<(), AuthError> {
        if name == ROOT_ROLE {
            return Err(root_role_refusal(name));
        }
        self.ensure(store, writes);
        if self.roles.contains_key(name) {
            writes.push((Action::Create, false));
            return Err(refuse(409, format!("Role {name} already exists.")));
        }
        self.roles.insert(name.to_string(), perms.clone());
        writes.push((Action::Create, true));
        store.write(Action::Create, Resource::Role(name.to_string()));
        Ok(())
    }
}

fn root_role_refusal(name: &str) -> AuthError {
    refuse(403, format!("Cannot modify role {name}: is root role."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store stand-in that counts indexes as the v2 store gives them.
    #[derive(Default)]
    struct Nodes {
        index: u64,
        keys: Vec<(Action, String)>,
    }

    impl NodeWriter for Nodes {
        fn make_directory(&mut self) {
            for k in DIRECTORY_NODES {
                self.index += 1;
                self.keys.push((Action::Create, k.to_string()));
            }
        }
        fn write(&mut self, action: Action, resource: Resource) {
            self.index += 1;
            self.keys.push((action, resource.internal_key()));
        }
    }

    fn hash(s: &str) -> Option<String> {
        Some(format!("hash-of-{s}"))
    }

    fn run(
        auth: &mut V2Auth,
        nodes: &mut Nodes,
        change: AuthChange,
    ) -> Result<AuthReply, AuthError> {
        auth.apply(&change, nodes).0
    }

    fn err(status: u16, message: &str) -> Result<AuthReply, AuthError> {
        Err(AuthError {
            status,
            message: message.to_string(),
        })
    }

    #[test]
    fn the_first_change_makes_the_directory_and_every_change_takes_an_index() {
        let mut auth = V2Auth::default();
        let mut nodes = Nodes::default();
        let r = run(
            &mut auth,
            &mut nodes,
            AuthChange::CreateOrUpdateUser {
                name: "root".into(),
                password_hash: hash("pw"),
                roles: None,
            },
        );
        assert_eq!(
            r,
            Ok(AuthReply::User {
                name: "root".into(),
                roles: Some(vec!["root".into()]),
                created: true
            })
        );
        assert_eq!(nodes.index, 5);
        // Refusals decided before the write touch nothing.
        let r = run(
            &mut auth,
            &mut nodes,
            AuthChange::DeleteRole {
                name: "root".into(),
            },
        );
        assert_eq!(r, err(403, "auth: Cannot modify role root: is root role."));
        assert_eq!(nodes.index, 5);
        // A failed write after the directory exists takes no index either.
        let r = run(
            &mut auth,
            &mut nodes,
            AuthChange::DeleteRole { name: "x".into() },
        );
        assert_eq!(r, err(404, "auth: Role x doesn't exist."));
        assert_eq!(nodes.index, 5);
        // Enabling makes the guest role, then flips the flag: two indexes.
        assert_eq!(
            run(&mut auth, &mut nodes, AuthChange::Enable),
            Ok(AuthReply::Done)
        );
        assert_eq!(nodes.index, 7);
        assert_eq!(
            nodes.keys[5..],
            [
                (Action::Create, "2/roles/guest".to_string()),
                (Action::Update, "2/enabled".to_string())
            ]
        );
        assert_eq!(auth.role(GUEST_ROLE), Some(root_perms()));
        assert_eq!(
            run(&mut auth, &mut nodes, AuthChange::Enable),
            err(409, "auth: already enabled")
        );
        assert_eq!(
            run(
                &mut auth,
                &mut nodes,
                AuthChange::DeleteUser {
                    name: "root".into()
                }
            ),
            err(403, "auth: Cannot delete root user while auth is enabled.")
        );
    }

    #[test]
    fn enabling_needs_a_root_user_and_disabling_needs_auth_on() {
        let mut auth = V2Auth::default();
        let mut nodes = Nodes::default();
        assert_eq!(
            run(&mut auth, &mut nodes, AuthChange::Enable),
            err(409, "auth: No root user available, please create one")
        );
        assert_eq!(
            run(&mut auth, &mut nodes, AuthChange::Disable),
            err(409, "auth: already disabled")
        );
        assert_eq!(nodes.index, 0);
    }

    #[test]
    fn users_are_created_updated_and_refused_as_etcd_does() {
        let mut auth = V2Auth::default();
        let mut n = Nodes::default();
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::CreateOrUpdateUser {
                    name: "a".into(),
                    password_hash: None,
                    roles: None
                }
            ),
            err(400, "auth: Cannot create user a with an empty password")
        );
        assert_eq!(n.index, 0);
        let created = AuthChange::CreateUser {
            name: "a".into(),
            password_hash: hash("x"),
            roles: Some(vec!["r2".into(), "r1".into()]),
        };
        assert_eq!(
            run(&mut auth, &mut n, created.clone()),
            Ok(AuthReply::User {
                name: "a".into(),
                roles: Some(vec!["r2".into(), "r1".into()]),
                created: false
            })
        );
        assert_eq!(
            run(&mut auth, &mut n, created),
            err(409, "auth: User a already exists.")
        );
        // Stored roles were as given (unsorted); an update without changes still writes
        // them sorted, as etcd's comparison of the two lists finds them different.
        let same = AuthChange::CreateOrUpdateUser {
            name: "a".into(),
            password_hash: None,
            roles: None,
        };
        assert_eq!(
            run(&mut auth, &mut n, same.clone()),
            Ok(AuthReply::User {
                name: "a".into(),
                roles: Some(vec!["r1".into(), "r2".into()]),
                created: false
            })
        );
        let before = n.index;
        assert_eq!(
            run(&mut auth, &mut n, same),
            err(
                400,
                "auth: User not updated. Use grant/revoke/password to update the user."
            )
        );
        assert_eq!(n.index, before);
        let grant = |g: &str| AuthChange::UpdateUser {
            name: "a".into(),
            password_hash: None,
            grant: vec![g.into()],
            revoke: vec![],
        };
        assert_eq!(
            run(&mut auth, &mut n, grant("r1")),
            err(409, "auth: Granting duplicate role r1 for user a")
        );
        // Roles are kept sorted after an update, and a grant needs no existing role (etcd
        // does not check).
        assert_eq!(
            run(&mut auth, &mut n, grant("r0")),
            Ok(AuthReply::User {
                name: "a".into(),
                roles: Some(vec!["r0".into(), "r1".into(), "r2".into()]),
                created: false
            })
        );
        let revoke = AuthChange::UpdateUser {
            name: "a".into(),
            password_hash: None,
            grant: vec![],
            revoke: vec!["zz".into()],
        };
        assert_eq!(
            run(&mut auth, &mut n, revoke),
            err(409, "auth: Revoking ungranted role zz for user a")
        );
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::UpdateUser {
                    name: "nobody".into(),
                    password_hash: None,
                    grant: vec!["r".into()],
                    revoke: vec![],
                }
            ),
            err(404, "auth: User nobody does not exist.")
        );
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::DeleteUser {
                    name: "nobody".into()
                }
            ),
            err(404, "auth: User nobody does not exist")
        );
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::DeleteUser { name: "a".into() }
            ),
            Ok(AuthReply::Done)
        );
        assert!(auth.user("a").is_none());
    }

    #[test]
    fn roles_merge_grants_and_revokes_as_etcd_does() {
        let mut auth = V2Auth::default();
        let mut n = Nodes::default();
        let perms = Perms {
            read: Some(vec!["/b/*".into(), "/a".into()]),
            write: None,
        };
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::CreateRole {
                    name: "r".into(),
                    perms: perms.clone()
                }
            ),
            Ok(AuthReply::Role {
                name: "r".into(),
                perms: perms.clone(),
                created: true
            })
        );
        // Created permissions are kept as given (order too).
        assert_eq!(auth.role("r"), Some(perms));
        let update = |grant: Option<Perms>, revoke: Option<Perms>| AuthChange::UpdateRole {
            name: "r".into(),
            grant,
            revoke,
        };
        let read = |p: &str| Perms {
            read: Some(vec![p.into()]),
            write: None,
        };
        assert_eq!(
            run(&mut auth, &mut n, update(Some(read("/a")), None)),
            err(409, "auth: Granting duplicate read permission /a")
        );
        let r = run(&mut auth, &mut n, update(Some(read("/c")), None));
        assert_eq!(
            r,
            Ok(AuthReply::Role {
                name: "r".into(),
                perms: Perms {
                    read: Some(vec!["/a".into(), "/b/*".into(), "/c".into()]),
                    write: None
                },
                created: false
            })
        );
        // Revoking what was never granted is ignored; revoking nothing new changes nothing.
        assert_eq!(
            run(&mut auth, &mut n, update(None, Some(read("/zz")))),
            err(
                400,
                "auth: Role not updated. Use grant/revoke to update the role."
            )
        );
        assert_eq!(
            run(&mut auth, &mut n, update(Some(read("/x")), None)).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            run(&mut auth, &mut n, update(None, Some(read("/nothere")))),
            err(
                400,
                "auth: Role not updated. Use grant/revoke to update the role."
            )
        );
        assert_eq!(
            run(&mut auth, &mut n, update(Some(read("/q")), None)).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::UpdateRole {
                    name: "nope".into(),
                    grant: Some(read("/q")),
                    revoke: None
                }
            ),
            err(404, "auth: Role nope does not exist.")
        );
        assert_eq!(
            run(
                &mut auth,
                &mut n,
                AuthChange::CreateRole {
                    name: "root".into(),
                    perms: Perms::default()
                }
            ),
            err(403, "auth: Cannot modify role root: is root role.")
        );
        assert_eq!(auth.role_names(), vec!["r".to_string(), "root".to_string()]);
    }

    #[test]
    fn key_patterns_match_as_etcd_matches_them() {
        let p = Perms {
            read: Some(vec!["/foo/*".into(), "/exact".into(), String::new()]),
            write: Some(vec!["/w".into()]),
        };
        assert!(p.has_key_access("/foo/bar", false));
        assert!(p.has_key_access("/foo/", false));
        assert!(!p.has_key_access("/foo", false));
        assert!(p.has_key_access("/exact", false));
        assert!(!p.has_key_access("/exact/x", false));
        assert!(!p.has_key_access("", false));
        assert!(p.has_key_access("/w", true));
        assert!(!p.has_key_access("/foo/bar", true));
        // Recursive access needs a `*` pattern.
        assert!(p.has_recursive_access("/foo/x", false));
        assert!(!p.has_recursive_access("/exact", false));
        let mut auth = V2Auth::default();
        assert!(auth.role_allows("root", "/anything", true, true));
        assert!(!auth.role_allows("missing", "/foo/x", false, false));
        let mut n = Nodes::default();
        run(
            &mut auth,
            &mut n,
            AuthChange::CreateRole {
                name: "p".into(),
                perms: p,
            },
        )
        .map(|_| ())
        .ok();
        assert!(auth.role_allows("p", "/foo/x", false, false));
    }

    #[test]
    fn user_root_always_reads_with_the_root_role() {
        let mut auth = V2Auth::default();
        let mut n = Nodes::default();
        run(
            &mut auth,
            &mut n,
            AuthChange::CreateUser {
                name: "root".into(),
                password_hash: hash("p"),
                roles: Some(vec!["r".into()]),
            },
        )
        .map(|_| ())
        .ok();
        let root = auth.user("root").map(|u| u.roles);
        assert_eq!(root, Some(Some(vec!["r".into(), "root".into()])));
        assert_eq!(
            role_json(
                "r",
                &Perms {
                    read: Some(vec!["/<".into()]),
                    write: None
                }
            ),
            r#"{"role":"r","permissions":{"kv":{"read":["/\u003c"],"write":null}}}"#
        );
        assert_eq!(user_json("u", &None), r#"{"user":"u","roles":null}"#);
    }
}
