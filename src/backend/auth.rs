//! The auth buckets of etcd's backend, both ways (oxetcd's `auth::AuthStore` ⇄ etcd's layout):
//!
//! ```text
//! auth       authEnabled -> [1] or [0], authRevision -> u64be
//! authUsers  name -> authpb.User{name, password = the bcrypt hash, roles (sorted), options}
//! authRoles  name -> authpb.Role{name, keyPermission (in the role's order)}
//! ```
//! etcd writes `authEnabled` only once auth was enabled or disabled; reading, a missing key is
//! "off". Keys are written in byte order (names are UTF-8, whose order is the bytes' order).
//!
//! Invariant: an imported store passes `AuthStore::check` or the import fails.

use std::collections::BTreeMap;

use prost::Message;

use super::import::{data, ImportError};
use crate::auth::{AuthStore, PermType, Permission, Role, User};
use crate::bbolt::{Bucket, PageSink, Value, WriteError, Writer};
use crate::proto::authpb;

pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";

pub fn write_auth<S: PageSink>(w: &mut Writer<S>, store: &AuthStore) -> Result<(), WriteError> {
    w.put(AUTH_ENABLED, &[u8::from(store.enabled())])?;
    w.put(AUTH_REVISION, &store.revision().to_be_bytes())
}

pub fn write_users<S: PageSink>(w: &mut Writer<S>, store: &AuthStore) -> Result<(), WriteError> {
    for (name, user) in store.users() {
        let record = authpb::User {
            name: name.as_bytes().to_vec(),
            password: user.password_hash.as_bytes().to_vec(),
            roles: user.roles.iter().cloned().collect(),
            options: Some(authpb::UserAddOptions {
                no_password: user.no_password,
            }),
        };
        w.put(name.as_bytes(), &record.encode_to_vec())?;
    }
    Ok(())
}

pub fn write_roles<S: PageSink>(w: &mut Writer<S>, store: &AuthStore) -> Result<(), WriteError> {
    for (name, role) in store.roles() {
        let record = authpb::Role {
            name: name.as_bytes().to_vec(),
            key_permission: role.perms.iter().map(Permission::to_proto).collect(),
        };
        w.put(name.as_bytes(), &record.encode_to_vec())?;
    }
    Ok(())
}

fn utf8(bytes: &[u8], bucket: &'static str, key: &[u8]) -> Result<String, ImportError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ImportError::BadEntry {
        bucket,
        key: key.to_vec(),
        reason: "not UTF-8".into(),
    })
}

/// The auth store of an etcd backend (auth off and revision 1 when the buckets are absent).
pub fn import_auth(root: &Bucket<'_>) -> Result<AuthStore, ImportError> {
    let mut enabled = false;
    let mut revision = 1;
    if let Some(Value::Bucket(auth)) = root.get(AUTH)? {
        enabled = matches!(auth.get(AUTH_ENABLED)?, Some(Value::Data([1])));
        if let Some(value) = auth.get(AUTH_REVISION)? {
            let bytes = data(value, "auth", AUTH_REVISION)?;
            let bytes: [u8; 8] = bytes.try_into().map_err(|_| ImportError::BadEntry {
                bucket: "auth",
                key: AUTH_REVISION.to_vec(),
                reason: format!("{} bytes, not 8", bytes.len()),
            })?;
            revision = u64::from_be_bytes(bytes).max(1);
        }
    }
    let mut users = BTreeMap::new();
    if let Some(Value::Bucket(bucket)) = root.get(AUTH_USERS)? {
        for entry in bucket.entries() {
            let entry = entry?;
            let bytes = data(entry.value, "authUsers", entry.key)?;
            let bad = |reason: String| ImportError::BadEntry {
                bucket: "authUsers",
                key: entry.key.to_vec(),
                reason,
            };
            let record = authpb::User::decode(bytes).map_err(|e| bad(e.to_string()))?;
            let no_password = record.options.is_some_and(|o| o.no_password);
            let user = User {
                password_hash: utf8(&record.password, "authUsers", entry.key)?,
                no_password,
                roles: record.roles.into_iter().collect(),
            };
            users.insert(utf8(&record.name, "authUsers", entry.key)?, user);
        }
    }
    let mut roles = BTreeMap::new();
    if let Some(Value::Bucket(bucket)) = root.get(AUTH_ROLES)? {
        for entry in bucket.entries() {
            let entry = entry?;
            let bytes = data(entry.value, "authRoles", entry.key)?;
            let bad = |reason: String| ImportError::BadEntry {
                bucket: "authRoles",
                key: entry.key.to_vec(),
                reason,
            };
            let record = authpb::Role::decode(bytes).map_err(|e| bad(e.to_string()))?;
            let mut perms = Vec::with_capacity(record.key_permission.len());
            for p in record.key_permission {
                let perm_type = PermType::from_proto(p.perm_type)
                    .ok_or_else(|| bad(format!("permission type {}", p.perm_type)))?;
                perms.push(Permission {
                    perm_type,
                    key: p.key,
                    range_end: p.range_end,
                });
            }
            roles.insert(utf8(&record.name, "authRoles", entry.key)?, Role { perms });
        }
    }
    AuthStore::from_parts(enabled, revision, users, roles).map_err(ImportError::Inconsistent)
}
