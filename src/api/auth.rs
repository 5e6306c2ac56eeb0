//! etcd's Auth calls (Authenticate, AuthEnable/Disable/Status, User*, Role*), the simple-token
//! table, and the identity of a request: [`Api::auth_info`] turns the caller's token (or, with
//! `--client-cert-auth`, its certificate's CN) into a user checked against the current auth
//! revision; the `check_*` helpers are the permission checks the other calls make once each.
//!
//! Passwords: UserAdd/UserChangePassword hash the password with bcrypt at `--bcrypt-cost` here,
//! on a blocking thread (at most [`HASHING_CONCURRENCY_MAX`] at once), and propose only the
//! hash; Authenticate verifies against the hash the same way and proposes a random token prefix.
//! The applied entry issues `<prefix>.<log index>` on every member (the member observer records
//! it in [`TokenKeeper`]), so a token is valid wherever the client goes next.
//!
//! Invariant: no password reaches a proposal, a log line or an error text.
//! Invariant: writes are checked in apply (`apply::authorize`) against the auth revision
//!            resolved here; reads are checked here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::forward::propose_or_forward;
use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Outcome};
use crate::auth::{self, AuthCommand, AuthError, AuthStore, PermType, Permission};
use crate::proto::etcdserverpb::*;

/// Password hashes computed at once; more requests wait (bcrypt is slow by design, and a burst of
/// guesses must not take every blocking thread).
pub const HASHING_CONCURRENCY_MAX: usize = 4;
/// Simple tokens kept at most; expired ones are dropped first, then the oldest.
pub const TOKENS_MAX: usize = 100_000;
/// Length of a simple token's random part (etcd: 16 letters).
const TOKEN_PREFIX_LEN: usize = 16;
/// Times Authenticate re-checks a password that raced with an auth store change.
const AUTHENTICATE_ATTEMPTS_MAX: usize = 3;

/// Member-wide auth settings and the simple-token table.
pub struct AuthContext {
    pub tokens: TokenKeeper,
    /// `--auth-token jwt,...`: tokens are JWTs this provider signs and verifies; the simple-token
    /// table stays empty.
    #[cfg(not(madsim))]
    pub jwt: Option<Arc<super::jwt::JwtTokens>>,
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: a request without a token is made as its certificate's CN.
    pub client_cert_auth: bool,
    hashing: Semaphore,
}

impl AuthContext {
    pub fn new(token_ttl: Duration, bcrypt_cost: u32, client_cert_auth: bool) -> Self {
        AuthContext {
            tokens: TokenKeeper::new(token_ttl),
            #[cfg(not(madsim))]
            jwt: None,
            bcrypt_cost,
            client_cert_auth,
            hashing: Semaphore::new(HASHING_CONCURRENCY_MAX),
        }
    }

    /// Whether tokens are JWTs (then no simple token is recorded or honored).
    #[cfg(not(madsim))]
    pub fn uses_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The simulator runs simple tokens only.
    #[cfg(madsim)]
    pub fn uses_jwt(&self) -> bool {
        false
    }
}

/// The simple tokens this member knows: token → (user, deadline). The deadline slides forward
/// on every use (etcd's simple-token TTL). Not replicated state: every member fills it from the
/// applied Authenticate entries, and it starts empty after a restart, as etcd's does.
pub struct TokenKeeper {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenKeeper {
    pub fn new(ttl: Duration) -> Self {
        TokenKeeper {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a token issued by an applied Authenticate.
    pub fn issue(&self, token: String, user: String, now: Instant) {
        let mut tokens = self.lock();
        if tokens.len() >= TOKENS_MAX {
            tokens.retain(|_, (_, deadline)| *deadline > now);
            if tokens.len() >= TOKENS_MAX {
                let oldest = tokens
                    .iter()
                    .min_by_key(|(_, (_, d))| *d)
                    .map(|(t, _)| t.clone());
                if let Some(oldest) = oldest {
                    tokens.remove(&oldest);
                }
            }
        }
        tokens.insert(token, (user, now + self.ttl));
    }

    /// The user of a live token, whose deadline moves to `now + ttl`; `None` when unknown or
    /// expired (an expired token is forgotten).
    pub fn lookup(&self, token: &str, now: Instant) -> Option<String> {
        let mut tokens = self.lock();
        let (user, deadline) = tokens.get_mut(token)?;
        if *deadline <= now {
            tokens.remove(token);
            return None;
        }
        *deadline = now + self.ttl;
        Some(user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, (u, _)| u != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Who a request is made as, and the auth revision that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// Empty when the request names nobody.
    pub user: String,
    pub revision: u64,
}

impl Api {
    fn auth_store(&self) -> Arc<AuthStore> {
        self.node.state().read().state.auth.clone()
    }

    /// etcd's order: a token first (a bad one fails the request, auth on or off), then, with
    /// `--client-cert-auth`, the certificate CN, else nobody.
    pub fn auth_info(&self, ctx: &ReqCtx) -> Result<AuthInfo, ApiError> {
        let revision = self.auth_store().revision();
        if let Some(token) = &ctx.token {
            #[cfg(not(madsim))]
            if let Some(jwt) = &self.auth.jwt {
                // A JWT names the auth revision it was issued at: checks compare that one
                // with the store's, so a token older than an auth change is refused as stale.
                let claims = jwt.verify(token).ok_or(AuthError::InvalidAuthToken)?;
                if claims.revision == 0 {
                    // Revision 0 marks the member's own proposals, which apply does not check.
                    return Err(AuthError::AuthOldRevision.into());
                }
                return Ok(AuthInfo {
                    user: claims.username,
                    revision: claims.revision,
                });
            }
            let user = self.auth.tokens.lookup(token, Instant::now());
            let user = user.ok_or(AuthError::InvalidAuthToken)?;
            return Ok(AuthInfo { user, revision });
        }
        let user = match (&ctx.cert_common_name, self.auth.client_cert_auth) {
            (Some(cn), true) => cn.clone(),
            _ => ctx.user.clone().unwrap_or_default(),
        };
        Ok(AuthInfo { user, revision })
    }

    /// A read of `[key, range_end)` (or a watch on it) by the caller.
    pub fn check_read(&self, ctx: &ReqCtx, key: &[u8], range_end: &[u8]) -> Result<(), ApiError> {
        // A bad token fails the call even while auth is off, as in etcd.
        let info = self.auth_info(ctx)?;
        let store = self.auth_store();
        store
            .check_key(&info.user, info.revision, key, range_end, PermType::Read)
            .map_err(|e| self.unmapped_if_jwt(e.into()))
    }

    /// etcd 3.5.1 reports a JWT older than the auth store unmapped (code Unknown, "auth:
    /// revision in header is old"); its clients log in again on either form.
    pub fn unmapped_if_jwt(&self, e: ApiError) -> ApiError {
        match e {
            ApiError::Kv(crate::mvcc::KvError::Auth(AuthError::AuthOldRevision))
                if self.auth.uses_jwt() =>
            {
                ApiError::AuthRaw(AuthError::AuthOldRevision)
            }
            other => other,
        }
    }

    /// The root role (auth management reads, membership changes).
    pub fn check_admin(&self, ctx: &ReqCtx) -> Result<(), ApiError> {
        let info = self.auth_info(ctx)?;
        self.auth_store().check_admin(&info.user)?;
        Ok(())
    }

    /// The root role, refused as etcd 3.5's maintenance calls refuse it: the auth package's own
    /// text with code Unknown.
    pub fn check_admin_raw(&self, ctx: &ReqCtx) -> Result<(), ApiError> {
        let raw = |e: ApiError| match e {
            ApiError::Kv(crate::mvcc::KvError::Auth(a)) => ApiError::AuthRaw(a),
            other => other,
        };
        let info = self.auth_info(ctx).map_err(raw)?;
        self.auth_store()
            .check_admin(&info.user)
            .map_err(ApiError::AuthRaw)
    }

    /// Whether the caller may see the keys of lease `id` (LeaseTimeToLive with keys): READ on
    /// every attached key (etcd's fix for CVE-2023-32082).
    pub fn check_lease_keys(&self, ctx: &ReqCtx, keys: &[Vec<u8>]) -> Result<(), ApiError> {
        for key in keys {
            self.check_read(ctx, key, &[])?;
        }
        Ok(())
    }
}

pub(crate) async fn off_worker<T: Send + 'static>(
    api: &Api,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = api
        .auth
        .hashing
        .acquire()
        .await
        .map_err(|_| ApiError::Internal("etcdserver: server stopped".into()))?;
    crate::raft::runtime::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("etcdserver: password hashing failed: {e}")))
}

pub(crate) async fn hash(api: &Api, password: String) -> Result<String, ApiError> {
    let cost = api.auth.bcrypt_cost;
    off_worker(api, move || auth::hash_password(&password, cost))
        .await?
        .map_err(ApiError::Internal)
}

/// Proposes an auth change; answers the KV revision for the header and the issued token.
async fn change(
    api: &Api,
    ctx: &ReqCtx,
    cmd: AuthCommand,
) -> Result<(ResponseHeader, String), ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    match propose_or_forward(api, ctx, Command::Auth(cmd)).await? {
        Outcome::Auth { revision, token } => {
            let mut header = api.header(&None);
            header.revision = revision;
            Ok((header, token))
        }
        _ => Err(ApiError::Internal(
            "etcdserver: unexpected apply outcome for an auth change".into(),
        )),
    }
}

/// A linearizable view of the auth store for the read-only calls.
async fn read_store(api: &Api, ctx: &ReqCtx) -> Result<Arc<AuthStore>, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    api.node.read_index().await?;
    Ok(api.auth_store())
}

fn random_prefix() -> String {
    let mut rng = rand::thread_rng();
    (0..TOKEN_PREFIX_LEN)
        .map(|_| {
            let n = rng.gen_range(0..52u8);
            char::from(if n < 26 { b'a' + n } else { b'A' + n - 26 })
        })
        .collect()
}

pub async fn authenticate(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthenticateRequest,
) -> Result<AuthenticateResponse, ApiError> {
    let AuthenticateRequest { name, password } = req;
    let password = Arc::new(password);
    for _ in 0..AUTHENTICATE_ATTEMPTS_MAX {
        let store = read_store(api, ctx).await?;
        let checked_at = store.revision();
        let (user, pw) = (name.clone(), password.clone());
        let verified = off_worker(api, move || store.verify_password(&user, &pw)).await?;
        if let Err(e) = verified {
            if e != AuthError::AuthNotEnabled {
                let remote = ctx.peer.map(|p| p.to_string()).unwrap_or_default();
                tracing::warn!(user = %name, remote = %remote, error = %e, "invalid authentication was requested");
            }
            return Err(e.into());
        }
        let cmd = AuthCommand::Authenticate {
            name: name.clone(),
            token_prefix: random_prefix(),
        };
        let (header, token) = change(
            api,
            &ReqCtx {
                token: None,
                ..ctx.clone()
            },
            cmd,
        )
        .await?;
        if !api.auth.uses_jwt() {
            // Through a follower the entry was applied on the leader first: wait until this
            // member applied it too, so the client's next call here finds its token (etcd
            // waits for the token's index when it looks a simple token up).
            api.node.read_index().await?;
        }
        if api.auth_store().revision() == checked_at {
            #[cfg(not(madsim))]
            let token = match &api.auth.jwt {
                // etcd signs at apply with the store's revision: the one checked here, which
                // the entry did not change.
                Some(jwt) => jwt.sign(&name, checked_at).map_err(|e| match e {
                    super::jwt::SignError::VerifyOnly => ApiError::AuthRaw(AuthError::VerifyOnly),
                    super::jwt::SignError::Failed => {
                        ApiError::Internal("etcdserver: signing the JWT failed".into())
                    }
                })?,
                None => token,
            };
            return Ok(AuthenticateResponse {
                header: Some(header),
                token,
            });
        }
        tracing::info!("revision when password checked became stale; retrying");
    }
    Err(AuthError::AuthOldRevision.into())
}

pub async fn auth_enable(api: &Api, ctx: &ReqCtx) -> Result<AuthEnableResponse, ApiError> {
    let (header, _) = change(api, ctx, AuthCommand::Enable).await?;
    Ok(AuthEnableResponse {
        header: Some(header),
    })
}

pub async fn auth_disable(api: &Api, ctx: &ReqCtx) -> Result<AuthDisableResponse, ApiError> {
    let (header, _) = change(api, ctx, AuthCommand::Disable).await?;
    Ok(AuthDisableResponse {
        header: Some(header),
    })
}

pub async fn auth_status(api: &Api, ctx: &ReqCtx) -> Result<AuthStatusResponse, ApiError> {
    let store = read_store(api, ctx).await?;
    api.check_admin(ctx)?;
    Ok(AuthStatusResponse {
        header: Some(api.current_header()),
        enabled: store.enabled(),
        auth_revision: store.revision(),
    })
}

pub async fn user_add(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserAddRequest,
) -> Result<AuthUserAddResponse, ApiError> {
    let no_password = req.options.is_some_and(|o| o.no_password);
    let password_hash = if no_password {
        String::new()
    } else {
        hash(api, req.password).await?
    };
    let cmd = AuthCommand::UserAdd {
        name: req.name,
        password_hash,
        no_password,
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthUserAddResponse {
        header: Some(header),
    })
}

pub async fn user_get(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserGetRequest,
) -> Result<AuthUserGetResponse, ApiError> {
    let store = read_store(api, ctx).await?;
    if let Err(e) = api.check_admin(ctx) {
        // A user may read itself.
        if api.auth_info(ctx)?.user != req.name {
            return Err(e);
        }
    }
    let user = store.user(&req.name).ok_or(AuthError::UserNotFound)?;
    Ok(AuthUserGetResponse {
        header: Some(api.current_header()),
        roles: user.roles.iter().cloned().collect(),
    })
}

pub async fn user_list(api: &Api, ctx: &ReqCtx) -> Result<AuthUserListResponse, ApiError> {
    let store = read_store(api, ctx).await?;
    api.check_admin(ctx)?;
    Ok(AuthUserListResponse {
        header: Some(api.current_header()),
        users: store.user_names(),
    })
}

pub async fn user_delete(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserDeleteRequest,
) -> Result<AuthUserDeleteResponse, ApiError> {
    let (header, _) = change(api, ctx, AuthCommand::UserDelete { name: req.name }).await?;
    Ok(AuthUserDeleteResponse {
        header: Some(header),
    })
}

pub async fn user_change_password(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserChangePasswordRequest,
) -> Result<AuthUserChangePasswordResponse, ApiError> {
    let password_hash = hash(api, req.password).await?;
    let cmd = AuthCommand::UserChangePassword {
        name: req.name,
        password_hash,
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthUserChangePasswordResponse {
        header: Some(header),
    })
}

pub async fn user_grant_role(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserGrantRoleRequest,
) -> Result<AuthUserGrantRoleResponse, ApiError> {
    let cmd = AuthCommand::UserGrantRole {
        user: req.user,
        role: req.role,
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthUserGrantRoleResponse {
        header: Some(header),
    })
}

pub async fn user_revoke_role(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthUserRevokeRoleRequest,
) -> Result<AuthUserRevokeRoleResponse, ApiError> {
    let cmd = AuthCommand::UserRevokeRole {
        name: req.name,
        role: req.role,
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthUserRevokeRoleResponse {
        header: Some(header),
    })
}

pub async fn role_add(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthRoleAddRequest,
) -> Result<AuthRoleAddResponse, ApiError> {
    let (header, _) = change(api, ctx, AuthCommand::RoleAdd { name: req.name }).await?;
    Ok(AuthRoleAddResponse {
        header: Some(header),
    })
}

pub async fn role_get(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthRoleGetRequest,
) -> Result<AuthRoleGetResponse, ApiError> {
    let store = read_store(api, ctx).await?;
    let info = api.auth_info(ctx)?;
    // A user may read its own roles.
    let own = store
        .user(&info.user)
        .is_some_and(|u| u.roles.contains(&req.role));
    if !own {
        api.check_admin(ctx)?;
    }
    let role = store.role(&req.role).ok_or(AuthError::RoleNotFound)?;
    Ok(AuthRoleGetResponse {
        header: Some(api.current_header()),
        perm: role.perms.iter().map(Permission::to_proto).collect(),
    })
}

pub async fn role_list(api: &Api, ctx: &ReqCtx) -> Result<AuthRoleListResponse, ApiError> {
    let store = read_store(api, ctx).await?;
    api.check_admin(ctx)?;
    Ok(AuthRoleListResponse {
        header: Some(api.current_header()),
        roles: store.role_names(),
    })
}

pub async fn role_delete(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthRoleDeleteRequest,
) -> Result<AuthRoleDeleteResponse, ApiError> {
    let (header, _) = change(api, ctx, AuthCommand::RoleDelete { role: req.role }).await?;
    Ok(AuthRoleDeleteResponse {
        header: Some(header),
    })
}

pub async fn role_grant_permission(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthRoleGrantPermissionRequest,
) -> Result<AuthRoleGrantPermissionResponse, ApiError> {
    let perm = req.perm.ok_or(AuthError::PermissionNotGiven)?;
    let perm_type = PermType::from_proto(perm.perm_type).ok_or(AuthError::PermissionNotGiven)?;
    let cmd = AuthCommand::RoleGrantPermission {
        name: req.name,
        perm: Permission {
            perm_type,
            key: perm.key,
            range_end: perm.range_end,
        },
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthRoleGrantPermissionResponse {
        header: Some(header),
    })
}

pub async fn role_revoke_permission(
    api: &Api,
    ctx: &ReqCtx,
    req: AuthRoleRevokePermissionRequest,
) -> Result<AuthRoleRevokePermissionResponse, ApiError> {
    let cmd = AuthCommand::RoleRevokePermission {
        role: req.role,
        key: req.key,
        range_end: req.range_end,
    };
    let (header, _) = change(api, ctx, cmd).await?;
    Ok(AuthRoleRevokePermissionResponse {
        header: Some(header),
    })
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn tokens_slide_expire_and_die_with_their_user() {
        let keeper = TokenKeeper::new(Duration::from_secs(300));
        let t0 = Instant::now();
        keeper.issue("a.1".into(), "u".into(), t0);
        keeper.issue("b.2".into(), "v".into(), t0);
        let later = t0 + Duration::from_secs(200);
        assert_eq!(keeper.lookup("a.1", later).as_deref(), Some("u"));
        // The use at +200 s moved a.1's deadline to +500 s; b.2 ran out at +300 s.
        let after = t0 + Duration::from_secs(400);
        assert_eq!(keeper.lookup("a.1", after).as_deref(), Some("u"));
        assert_eq!(keeper.lookup("b.2", after), None);
        keeper.invalidate_user("u");
        assert_eq!(keeper.lookup("a.1", after), None);
        assert_eq!(keeper.lookup("nope", t0), None);
    }

    #[test]
    fn a_token_prefix_is_sixteen_letters() {
        let p = random_prefix();
        assert_eq!(p.len(), TOKEN_PREFIX_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
    }
}
