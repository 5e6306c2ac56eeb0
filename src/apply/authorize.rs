//! The auth checks of a command at apply time (etcd's auth applier), and the alarm gates in
//! front of them.
//!
//! Writes are checked here, against the auth store the command is applied to, with the user
//! and auth revision of its request header: a put needs WRITE on its key (and READ for
//! `prev_kv`); a delete WRITE on its range (READ for `prev_kv`); a txn READ on every compare and
//! the permission of every op in both branches, nested txns included; a put with a lease, and a
//! lease revoke, WRITE on every key already attached to the lease; an auth store change the root
//! role. A request checked at an older auth revision than the store's is refused ("revision of
//! auth store is old"): its permissions may have changed since; the client authenticates again
//! and retries.
//!
//! Proposals made by the member itself (lease expiry, auto compaction, alarms) carry no user and
//! auth revision 0 and are not checked; a client request always carries an auth revision >= 1.
//!
//! Invariant: a refusal here happens before anything changes.

use super::{adds_data, Command, RequestHeader, State};
use crate::auth::{AuthError, PermType};
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, TxnRequest};

impl State {
    /// The alarm gates: CORRUPT refuses everything but alarms, NOSPACE what adds data.
    pub(super) fn refuse_by_alarm(&self, cmd: &Command) -> Result<(), KvError> {
        if self.corrupt() && !matches!(cmd, Command::Alarm { .. }) {
            return Err(KvError::Corrupt);
        }
        if self.out_of_space() && adds_data(cmd) {
            return Err(KvError::NoSpace);
        }
        Ok(())
    }

    /// etcd's auth applier: whether `header`'s user may apply `cmd` now.
    pub(super) fn authorize(&self, header: &RequestHeader, cmd: &Command) -> Result<(), KvError> {
        let internal = header.user.is_empty() && header.auth_revision == 0;
        if !self.auth.enabled() || internal {
            return Ok(());
        }
        let checker = Checker {
            state: self,
            header,
        };
        let result = match cmd {
            Command::Put(req) => checker.put(req),
            Command::DeleteRange(req) => checker.delete(req),
            Command::Txn(req) => checker.txn(req),
            Command::LeaseRevoke { id } | Command::LeaseExpire { id, .. } => {
                checker.lease_puts(*id)
            }
            Command::Auth(change) if change.needs_admin() => self.auth.check_admin(&header.user),
            Command::Auth(_)
            | Command::Compact(_)
            | Command::LeaseGrant { .. }
            | Command::Alarm { .. } => Ok(()),
            // v2 requests are not subject to v3 auth (etcd keeps the two apart).
            Command::V2(_) => Ok(()),
        };
        result.map_err(KvError::Auth)
    }
}

struct Checker<'a> {
    state: &'a State,
    header: &'a RequestHeader,
}

impl Checker<'_> {
    fn key(&self, key: &[u8], range_end: &[u8], need: PermType) -> Result<(), AuthError> {
        let h = self.header;
        self.state
            .auth
            .check_key(&h.user, h.auth_revision, key, range_end, need)
    }

    fn put(&self, req: &PutRequest) -> Result<(), AuthError> {
        self.key(&req.key, &[], PermType::Write)?;
        // A lease with keys this user may not write cannot be revoked by it, so it may not
        // attach more keys to it either.
        self.lease_puts(req.lease)?;
        if req.prev_kv {
            self.key(&req.key, &[], PermType::Read)?;
        }
        Ok(())
    }

    fn delete(&self, req: &DeleteRangeRequest) -> Result<(), AuthError> {
        self.key(&req.key, &req.range_end, PermType::Write)?;
        if req.prev_kv {
            self.key(&req.key, &req.range_end, PermType::Read)?;
        }
        Ok(())
    }

    fn txn(&self, req: &TxnRequest) -> Result<(), AuthError> {
        for cmp in &req.compare {
            self.key(&cmp.key, &cmp.range_end, PermType::Read)?;
        }
        for op in req.success.iter().chain(&req.failure) {
            match &op.request {
                Some(Request::RequestRange(r)) => self.key(&r.key, &r.range_end, PermType::Read)?,
                Some(Request::RequestPut(r)) => self.put(r)?,
                Some(Request::RequestDeleteRange(r)) => self.delete(r)?,
                Some(Request::RequestTxn(r)) => self.txn(r)?,
                None => {}
            }
        }
        Ok(())
    }

    /// WRITE on every key attached to lease `id` (none for lease 0 or an unknown lease).
    fn lease_puts(&self, id: i64) -> Result<(), AuthError> {
        if id == 0 {
            return Ok(());
        }
        for key in self.state.leases.keys(id).unwrap_or_default() {
            self.key(&key, &[], PermType::Write)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Outcome;
    use crate::auth::{AuthCommand, Permission};
    use crate::proto::etcdserverpb::{Compare, RequestOp};

    /// root (role root) and `u` with READWRITE on prefix `p/` and READ on `r`; auth enabled.
    fn state() -> State {
        let mut state = State::new();
        let perm = |perm_type, key: &str, range_end: &str| Permission {
            perm_type,
            key: key.into(),
            range_end: range_end.into(),
        };
        let changes = [
            AuthCommand::UserAdd {
                name: "root".into(),
                password_hash: "h".into(),
                no_password: false,
            },
            AuthCommand::UserAdd {
                name: "u".into(),
                password_hash: "h".into(),
                no_password: false,
            },
            AuthCommand::RoleAdd { name: "rw".into() },
            AuthCommand::RoleGrantPermission {
                name: "rw".into(),
                perm: perm(PermType::ReadWrite, "p/", "p0"),
            },
            AuthCommand::RoleGrantPermission {
                name: "rw".into(),
                perm: perm(PermType::Read, "r", ""),
            },
            AuthCommand::UserGrantRole {
                user: "u".into(),
                role: "rw".into(),
            },
            AuthCommand::UserGrantRole {
                user: "root".into(),
                role: "root".into(),
            },
            AuthCommand::Enable,
        ];
        for change in changes {
            assert!(state.apply(&Command::Auth(change)).result.is_ok());
        }
        state
    }

    fn header(state: &State, user: &str) -> RequestHeader {
        RequestHeader {
            id: 1,
            user: user.into(),
            auth_revision: state.auth.revision(),
        }
    }

    fn put(key: &str) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..PutRequest::default()
        }
    }

    fn op(request: Request) -> RequestOp {
        RequestOp {
            request: Some(request),
        }
    }

    fn refusal(state: &mut State, header: &RequestHeader, cmd: &Command) -> Option<AuthError> {
        let before = state.clone();
        match state
            .apply_entry(crate::apply::EntryId { index: 9, term: 1 }, header, cmd)
            .result
        {
            Err(KvError::Auth(e)) => {
                assert_eq!(*state, before, "a refused command changed the state");
                Some(e)
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn writes_need_write_permission_and_a_current_auth_revision() {
        let mut s = state();
        let u = header(&s, "u");
        assert_eq!(refusal(&mut s, &u, &Command::Put(put("p/a"))), None);
        assert_eq!(
            refusal(&mut s, &u, &Command::Put(put("r"))),
            Some(AuthError::PermissionDenied)
        );
        let no_user = header(&s, "");
        assert_eq!(
            refusal(&mut s, &no_user, &Command::Put(put("p/a"))),
            Some(AuthError::UserEmpty)
        );
        // The store moved on after `u`'s request was checked.
        let stale = u.clone();
        let grant = AuthCommand::RoleAdd { name: "x".into() };
        assert!(s.apply(&Command::Auth(grant)).result.is_ok());
        assert_eq!(
            refusal(&mut s, &stale, &Command::Put(put("p/a"))),
            Some(AuthError::AuthOldRevision)
        );
        // The member's own proposals (lease expiry, compaction) carry no user and revision 0.
        let internal = RequestHeader::default();
        assert_eq!(refusal(&mut s, &internal, &Command::Put(put("zzz"))), None);
    }

    /// Regression (CVE-2026-33343 in etcd): a forbidden op nested in an inner txn's branch must
    /// refuse the whole txn, as must a compare on a key the user may not read.
    #[test]
    fn a_txn_is_checked_in_every_compare_and_nested_op() {
        let mut s = state();
        let u = header(&s, "u");
        let inner = TxnRequest {
            failure: vec![op(Request::RequestPut(put("secret")))],
            ..TxnRequest::default()
        };
        let nested = TxnRequest {
            success: vec![
                op(Request::RequestPut(put("p/a"))),
                op(Request::RequestTxn(inner)),
            ],
            ..TxnRequest::default()
        };
        assert_eq!(
            refusal(&mut s, &u, &Command::Txn(nested)),
            Some(AuthError::PermissionDenied)
        );
        let compare = TxnRequest {
            compare: vec![Compare {
                key: b"secret".to_vec(),
                ..Compare::default()
            }],
            success: vec![op(Request::RequestPut(put("p/a")))],
            ..TxnRequest::default()
        };
        assert_eq!(
            refusal(&mut s, &u, &Command::Txn(compare)),
            Some(AuthError::PermissionDenied)
        );
        let fine = TxnRequest {
            compare: vec![Compare {
                key: b"r".to_vec(),
                ..Compare::default()
            }],
            failure: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
                ..DeleteRangeRequest::default()
            }))],
            ..TxnRequest::default()
        };
        assert_eq!(refusal(&mut s, &u, &Command::Txn(fine)), None);
    }

    /// etcd's lease rules: revoking a lease, or attaching another key to it, needs WRITE on
    /// every key already attached.
    #[test]
    fn lease_revoke_and_attach_need_write_on_every_attached_key() {
        let mut s = state();
        let root = header(&s, "root");
        let u = header(&s, "u");
        assert!(s
            .apply_entry(
                crate::apply::EntryId { index: 1, term: 1 },
                &root,
                &Command::LeaseGrant { id: 5, ttl: 60 }
            )
            .result
            .is_ok());
        let leased = |key: &str| {
            Command::Put(PutRequest {
                lease: 5,
                ..put(key)
            })
        };
        assert_eq!(refusal(&mut s, &u, &leased("p/a")), None);
        assert_eq!(refusal(&mut s, &root, &leased("secret")), None);
        assert_eq!(
            refusal(&mut s, &u, &leased("p/b")),
            Some(AuthError::PermissionDenied)
        );
        assert_eq!(
            refusal(&mut s, &u, &Command::LeaseRevoke { id: 5 }),
            Some(AuthError::PermissionDenied)
        );
        assert_eq!(
            refusal(&mut s, &root, &Command::LeaseRevoke { id: 5 }),
            None
        );
    }

    #[test]
    fn auth_changes_need_root_and_authenticate_issues_the_token() {
        let mut s = state();
        let u = header(&s, "u");
        let add = Command::Auth(AuthCommand::RoleAdd { name: "y".into() });
        assert_eq!(refusal(&mut s, &u, &add), Some(AuthError::PermissionDenied));
        let root = header(&s, "root");
        assert_eq!(refusal(&mut s, &root, &add), None);
        let login = Command::Auth(AuthCommand::Authenticate {
            name: "u".into(),
            token_prefix: "abc".into(),
        });
        let applied = s.apply_entry(
            crate::apply::EntryId { index: 42, term: 1 },
            &header(&s, ""),
            &login,
        );
        assert!(matches!(
            applied.result,
            Ok(Outcome::Auth { ref token, .. }) if token == "abc.42"
        ));
    }
}
