//! `AuthError`: every way an auth store operation or permission check can fail, with etcd's
//! exact text. The gRPC code of each lives with the other codes in `api::error`.

use std::fmt;

/// Why the auth store refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AuthError {
    /// AuthEnable without a `root` user.
    RootUserNotExist,
    /// AuthEnable while `root` does not hold the `root` role.
    RootRoleNotExist,
    UserAlreadyExist,
    /// A user name that is empty (also: a request without a user while auth is enabled).
    UserEmpty,
    UserNotFound,
    RoleAlreadyExist,
    RoleNotFound,
    RoleEmpty,
    /// Wrong password, unknown user, or a user without a password.
    AuthFailed,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    /// A RoleGrantPermission without a permission.
    PermissionNotGiven,
    AuthNotEnabled,
    InvalidAuthToken,
    /// Deleting `root`, deleting role `root`, or revoking `root` from `root` while enabled.
    InvalidAuthMgmt,
    /// The request was checked against an older auth store than the one it is applied to.
    AuthOldRevision,
    /// Authenticate on a member whose JWT provider has only the public key.
    VerifyOnly,
}

impl AuthError {
    /// etcd's text as the client API reports it.
    pub fn etcd_message(self) -> &'static str {
        match self {
            AuthError::RootUserNotExist => "etcdserver: root user does not exist",
            AuthError::RootRoleNotExist => "etcdserver: root user does not have root role",
            AuthError::UserAlreadyExist => "etcdserver: user name already exists",
            AuthError::UserEmpty => "etcdserver: user name is empty",
            AuthError::UserNotFound => "etcdserver: user name not found",
            AuthError::RoleAlreadyExist => "etcdserver: role name already exists",
            AuthError::RoleNotFound => "etcdserver: role name not found",
            AuthError::RoleEmpty => "etcdserver: role name is empty",
            AuthError::AuthFailed => {
                "etcdserver: authentication failed, invalid user ID or password"
            }
            AuthError::PermissionDenied => "etcdserver: permission denied",
            AuthError::RoleNotGranted => "etcdserver: role is not granted to the user",
            AuthError::PermissionNotGranted => "etcdserver: permission is not granted to the role",
            AuthError::PermissionNotGiven => "etcdserver: permission not given",
            AuthError::AuthNotEnabled => "etcdserver: authentication is not enabled",
            AuthError::InvalidAuthToken => "etcdserver: invalid auth token",
            AuthError::InvalidAuthMgmt => "etcdserver: invalid auth management",
            AuthError::AuthOldRevision => "etcdserver: revision of auth store is old",
            AuthError::VerifyOnly => "auth: token signing attempted with verify-only key",
        }
    }

    /// The auth package's own text ("auth: ..."), which etcd 3.5 returns unmapped (gRPC code
    /// Unknown) from the maintenance calls that need the root role.
    pub fn raw_message(self) -> &'static str {
        match self {
            AuthError::UserEmpty => "auth: user name is empty",
            AuthError::UserNotFound => "auth: user name not found",
            AuthError::InvalidAuthToken => "auth: invalid auth token",
            AuthError::AuthOldRevision => "auth: revision in header is old",
            AuthError::VerifyOnly => "auth: token signing attempted with verify-only key",
            _ => "auth: permission denied",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.etcd_message())
    }
}

impl std::error::Error for AuthError {}
