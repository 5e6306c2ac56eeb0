//! auth/ — the auth store: users, roles, their key permissions, whether auth is enabled, and
//! the auth revision. Pure replicated state beside `mvcc/` and `lease/`: changed only by
//! [`AuthCommand`]s applied from the raft log, read by the permission checks.
//!
//! etcd's rules, kept here: the auth revision starts at 1 and every successful change of a user,
//! role or permission, and AuthDisable, moves it by one (AuthEnable and a repeated role grant do
//! not). Enabling needs user `root` holding role `root` (the role itself need not exist: etcd
//! lets `root` be granted before it is added). While enabled, deleting user `root`, deleting
//! role `root` or revoking `root` from `root` is "invalid auth management". Deleting a role
//! takes it away from every user. A user holding `root` may do everything.
//!
//! Passwords never reach this module: the member that receives UserAdd/UserChangePassword
//! hashes the password with bcrypt first and proposes only the hash; Authenticate is checked
//! against the hash before proposing, and the proposal carries the token prefix, not the
//! password. Verifying a password is `verify_password`, a pure (slow) function the caller runs
//! off the async workers.
//!
//! Invariant: `revision >= 1`.
//! Invariant: a role's permissions are ordered by key (etcd's insertion rule, see
//!            `Role::grant`) and no two have the same (key, range_end).
//! Invariant: a user with `no_password` has an empty password hash.

mod error;
pub mod perm;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use error::AuthError;
pub use perm::{PermType, Permission};

/// The name of the all-powerful user and role.
pub const ROOT: &str = "root";

/// One user: a bcrypt hash (empty with `no_password`) and the names of its roles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub password_hash: String,
    pub no_password: bool,
    pub roles: BTreeSet<String>,
}

/// One role: its key permissions in etcd's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub perms: Vec<Permission>,
}

impl Role {
    /// etcd's grant: an existing (key, range_end) gets the new type; a new one is inserted
    /// before the first permission whose key is not smaller.
    fn grant(&mut self, perm: Permission) {
        let at = self.perms.partition_point(|p| p.key < perm.key);
        let same = self.perms[at..]
            .iter()
            .take_while(|p| p.key == perm.key)
            .position(|p| p.range_end == perm.range_end);
        match same {
            Some(offset) => self.perms[at + offset].perm_type = perm.perm_type,
            None => self.perms.insert(at, perm),
        }
    }
}

/// The replicated auth store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// A change of the auth store, as proposed through raft.
///
/// The variant order is part of the log format (bincode writes the variant index): append new
/// variants at the end, never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    Enable,
    Disable,
    /// A password already checked by the proposer; applying it issues the token
    /// `<token_prefix>.<log index>` when the user may still authenticate.
    Authenticate {
        name: String,
        token_prefix: String,
    },
    UserAdd {
        name: String,
        /// bcrypt hash of the password; empty with `no_password`.
        password_hash: String,
        no_password: bool,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        role: String,
    },
    RoleGrantPermission {
        name: String,
        perm: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

impl AuthCommand {
    /// Whether etcd lets only root do this while auth is enabled (every change but
    /// Authenticate).
    pub fn needs_admin(&self) -> bool {
        !matches!(self, AuthCommand::Authenticate { .. })
    }
}

impl AuthStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// User names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Role names, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Users in name order.
    pub fn users(&self) -> impl Iterator<Item = (&str, &User)> {
        self.users.iter().map(|(name, user)| (name.as_str(), user))
    }

    /// Roles in name order.
    pub fn roles(&self) -> impl Iterator<Item = (&str, &Role)> {
        self.roles.iter().map(|(name, role)| (name.as_str(), role))
    }

    /// A store from its parts (an imported etcd backend), checked like a decoded one.
    pub fn from_parts(
        enabled: bool,
        revision: u64,
        users: BTreeMap<String, User>,
        roles: BTreeMap<String, Role>,
    ) -> Result<AuthStore, String> {
        let store = AuthStore {
            enabled,
            revision,
            users,
            roles,
        };
        store.check()?;
        Ok(store)
    }

    fn bump(&mut self) {
        self.revision += 1;
    }

    /// Applies one change. `index` is the raft log index of the entry (the suffix of a simple
    /// token). Returns the issued token for Authenticate, an empty string otherwise. A refused
    /// change changes nothing.
    pub fn apply(&mut self, index: u64, cmd: &AuthCommand) -> Result<String, AuthError> {
        match cmd {
            AuthCommand::Enable => self.enable()?,
            AuthCommand::Disable => {
                // etcd moves the revision even when auth was already off.
                self.enabled = false;
                self.bump();
            }
            AuthCommand::Authenticate { name, token_prefix } => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                match self.users.get(name) {
                    Some(user) if !user.no_password => {}
                    _ => return Err(AuthError::AuthFailed),
                }
                return Ok(format!("{token_prefix}.{index}"));
            }
            AuthCommand::UserAdd {
                name,
                password_hash,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    password_hash: if *no_password {
                        String::new()
                    } else {
                        password_hash.clone()
                    },
                    no_password: *no_password,
                    roles: BTreeSet::new(),
                };
                self.users.insert(name.clone(), user);
                self.bump();
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
                self.bump();
            }
            AuthCommand::UserChangePassword {
                name,
                password_hash,
            } => {
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                user.password_hash = password_hash.clone();
                user.no_password = false;
                self.bump();
            }
            AuthCommand::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(AuthError::UserNotFound);
                }
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                let roles = &mut self
                    .users
                    .get_mut(user)
                    .ok_or(AuthError::UserNotFound)?
                    .roles;
                if roles.insert(role.clone()) {
                    self.bump();
                }
            }
            AuthCommand::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                if !user.roles.remove(role) {
                    return Err(AuthError::RoleNotGranted);
                }
                self.bump();
            }
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
                self.bump();
            }
            AuthCommand::RoleDelete { role } => {
                if self.enabled && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(role).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.remove(role);
                }
                self.bump();
            }
            AuthCommand::RoleGrantPermission { name, perm } => {
                let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                role.grant(perm.clone());
                self.bump();
            }
            AuthCommand::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let role = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let at = role
                    .perms
                    .iter()
                    .position(|p| &p.key == key && &p.range_end == range_end)
                    .ok_or(AuthError::PermissionNotGranted)?;
                role.perms.remove(at);
                self.bump();
            }
        }
        debug_assert_eq!(self.check(), Ok(()));
        Ok(String::new())
    }

    fn enable(&mut self) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !root.roles.contains(ROOT) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(())
    }

    /// Whether `user` holds the root role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// etcd's admin check (auth management, membership, defragment, snapshot, hashes): passes
    /// while auth is off; otherwise the user must exist and hold the root role.
    pub fn check_admin(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let found = self.users.get(user).ok_or(AuthError::UserNotFound)?;
        if !found.roles.contains(ROOT) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's key permission check for `user`, checked at auth revision `checked_at`, on
    /// `[key, range_end)` (range rules as Range: empty end = one key, `"\0"` = from key).
    /// Passes while auth is off.
    pub fn check_key(
        &self,
        user: &str,
        checked_at: u64,
        key: &[u8],
        range_end: &[u8],
        need: PermType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if checked_at < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let found = self.users.get(user).ok_or(AuthError::PermissionDenied)?;
        if found.roles.contains(ROOT) {
            return Ok(());
        }
        let granted = found
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .filter(|p| p.perm_type.allows(need));
        if perm::covers(granted, key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Verifies `password` for AuthEnticate before proposing: the user must exist, have a
    /// password, and the password must match. Slow by design (bcrypt): call it off the async
    /// workers, with a clone of the store.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.no_password {
            return Err(AuthError::AuthFailed);
        }
        match bcrypt::verify(password, &user.password_hash) {
            Ok(true) => Ok(()),
            _ => Err(AuthError::AuthFailed),
        }
    }

    /// Checks the invariants in the module header.
    pub fn check(&self) -> Result<(), String> {
        if self.revision == 0 {
            return Err("auth revision 0".into());
        }
        for (name, user) in &self.users {
            if user.no_password && !user.password_hash.is_empty() {
                return Err(format!("user {name:?} has no_password and a hash"));
            }
        }
        for (name, role) in &self.roles {
            let ordered = role.perms.windows(2).all(|w| w[0].key <= w[1].key);
            let mut seen = BTreeSet::new();
            let unique = role
                .perms
                .iter()
                .all(|p| seen.insert((&p.key, &p.range_end)));
            if !ordered || !unique {
                return Err(format!(
                    "role {name:?} has unordered or repeated permissions"
                ));
            }
        }
        Ok(())
    }
}

/// Hashes `password` with bcrypt at `cost` (4..=31). Slow by design: run it off the async
/// workers.
pub fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash(password, cost).map_err(|e| format!("bcrypt: {e}"))
}
