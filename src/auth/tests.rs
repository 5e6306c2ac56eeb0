//! The auth store's rules, as etcd 3.5 answers them (texts checked against etcdctl transcripts
//! of etcd 3.5.1).

use super::*;

fn add_user(store: &mut AuthStore, name: &str) {
    let cmd = AuthCommand::UserAdd {
        name: name.into(),
        password_hash: "h".into(),
        no_password: false,
    };
    store.apply(1, &cmd).unwrap();
}

fn run(store: &mut AuthStore, cmd: AuthCommand) -> Result<String, AuthError> {
    let before = store.clone();
    let result = store.apply(7, &cmd);
    if result.is_err() {
        assert_eq!(*store, before, "a refused {cmd:?} changed the store");
    }
    result
}

fn perm(perm_type: PermType, key: &str, range_end: &str) -> Permission {
    Permission {
        perm_type,
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
    }
}

fn grant(store: &mut AuthStore, role: &str, p: Permission) {
    let cmd = AuthCommand::RoleGrantPermission {
        name: role.into(),
        perm: p,
    };
    run(store, cmd).unwrap();
}

/// A store with root (role root), user `u` with role `r`, auth enabled.
fn enabled_store() -> AuthStore {
    let mut s = AuthStore::new();
    add_user(&mut s, ROOT);
    add_user(&mut s, "u");
    run(&mut s, AuthCommand::RoleAdd { name: "r".into() }).unwrap();
    for (user, role) in [(ROOT, ROOT), ("u", "r")] {
        let cmd = AuthCommand::UserGrantRole {
            user: user.into(),
            role: role.into(),
        };
        run(&mut s, cmd).unwrap();
    }
    run(&mut s, AuthCommand::Enable).unwrap();
    s
}

#[test]
fn enabling_needs_root_with_the_root_role_and_does_not_move_the_revision() {
    let mut s = AuthStore::new();
    assert_eq!(s.revision(), 1);
    assert_eq!(
        run(&mut s, AuthCommand::Enable),
        Err(AuthError::RootUserNotExist)
    );
    add_user(&mut s, ROOT);
    assert_eq!(
        run(&mut s, AuthCommand::Enable),
        Err(AuthError::RootRoleNotExist)
    );
    // etcd grants role root before it exists (etcdctl adds it first anyway).
    let grant_root = AuthCommand::UserGrantRole {
        user: ROOT.into(),
        role: ROOT.into(),
    };
    run(&mut s, grant_root.clone()).unwrap();
    assert_eq!(s.revision(), 3);
    // A repeated grant changes nothing, revision included.
    run(&mut s, grant_root).unwrap();
    assert_eq!(s.revision(), 3);
    run(&mut s, AuthCommand::Enable).unwrap();
    assert!(s.enabled());
    assert_eq!(s.revision(), 3);
    run(&mut s, AuthCommand::Enable).unwrap();
    run(&mut s, AuthCommand::Disable).unwrap();
    assert_eq!((s.enabled(), s.revision()), (false, 4));
}

#[test]
fn root_cannot_be_dismantled_while_enabled() {
    let mut s = enabled_store();
    let cases = [
        AuthCommand::UserDelete { name: ROOT.into() },
        AuthCommand::RoleDelete { role: ROOT.into() },
        AuthCommand::UserRevokeRole {
            name: ROOT.into(),
            role: ROOT.into(),
        },
    ];
    for cmd in cases.clone() {
        assert_eq!(run(&mut s, cmd), Err(AuthError::InvalidAuthMgmt));
    }
    run(&mut s, AuthCommand::Disable).unwrap();
    for cmd in cases.into_iter().rev() {
        let result = run(&mut s, cmd.clone());
        // The role root was never added, only granted.
        if matches!(cmd, AuthCommand::RoleDelete { .. }) {
            assert_eq!(result, Err(AuthError::RoleNotFound));
        } else {
            assert_eq!(result, Ok(String::new()), "{cmd:?}");
        }
    }
}

#[test]
fn user_and_role_errors_use_etcds_texts() {
    let mut s = enabled_store();
    let cases: Vec<(AuthCommand, &str)> = vec![
        (
            AuthCommand::UserAdd {
                name: String::new(),
                password_hash: "h".into(),
                no_password: false,
            },
            "etcdserver: user name is empty",
        ),
        (
            AuthCommand::UserAdd {
                name: "u".into(),
                password_hash: "h".into(),
                no_password: false,
            },
            "etcdserver: user name already exists",
        ),
        (
            AuthCommand::UserDelete { name: "x".into() },
            "etcdserver: user name not found",
        ),
        (
            AuthCommand::UserGrantRole {
                user: "x".into(),
                role: "nope".into(),
            },
            "etcdserver: user name not found",
        ),
        (
            AuthCommand::UserGrantRole {
                user: "u".into(),
                role: "nope".into(),
            },
            "etcdserver: role name not found",
        ),
        (
            AuthCommand::UserRevokeRole {
                name: "u".into(),
                role: "nope".into(),
            },
            "etcdserver: role is not granted to the user",
        ),
        (
            AuthCommand::RoleAdd {
                name: String::new(),
            },
            "etcdserver: role name is empty",
        ),
        (
            AuthCommand::RoleAdd { name: "r".into() },
            "etcdserver: role name already exists",
        ),
        (
            AuthCommand::RoleRevokePermission {
                role: "r".into(),
                key: b"a".to_vec(),
                range_end: Vec::new(),
            },
            "etcdserver: permission is not granted to the role",
        ),
        (
            AuthCommand::Authenticate {
                name: "x".into(),
                token_prefix: "p".into(),
            },
            "etcdserver: authentication failed, invalid user ID or password",
        ),
    ];
    for (cmd, text) in cases {
        let err = run(&mut s, cmd.clone()).expect_err("refused");
        assert_eq!(err.etcd_message(), text, "{cmd:?}");
    }
}

#[test]
fn a_token_is_the_prefix_and_the_log_index_and_needs_a_password_user() {
    let mut s = AuthStore::new();
    let auth = |name: &str| AuthCommand::Authenticate {
        name: name.into(),
        token_prefix: "abcdefghijklmnop".into(),
    };
    assert_eq!(run(&mut s, auth("u")), Err(AuthError::AuthNotEnabled));
    let mut s = enabled_store();
    assert_eq!(
        s.apply(195, &auth("u")).as_deref(),
        Ok("abcdefghijklmnop.195")
    );
    let add = AuthCommand::UserAdd {
        name: "cn".into(),
        password_hash: "ignored".into(),
        no_password: true,
    };
    run(&mut s, add).unwrap();
    assert_eq!(s.user("cn").map(|u| u.password_hash.as_str()), Some(""));
    assert_eq!(run(&mut s, auth("cn")), Err(AuthError::AuthFailed));
}

#[test]
fn deleting_a_role_takes_it_from_every_user() {
    let mut s = enabled_store();
    run(&mut s, AuthCommand::RoleDelete { role: "r".into() }).unwrap();
    assert!(s.user("u").is_some_and(|u| u.roles.is_empty()));
}

#[test]
fn permissions_keep_etcds_order_and_a_regrant_changes_the_type() {
    let mut s = enabled_store();
    grant(&mut s, "r", perm(PermType::Read, "b", ""));
    grant(&mut s, "r", perm(PermType::Read, "a", "c"));
    grant(&mut s, "r", perm(PermType::Write, "a", ""));
    grant(&mut s, "r", perm(PermType::ReadWrite, "a", "c"));
    let order = s.role("r").unwrap().perms.to_vec();
    assert_eq!(
        order,
        vec![
            perm(PermType::Write, "a", ""),
            perm(PermType::ReadWrite, "a", "c"),
            perm(PermType::Read, "b", ""),
        ]
    );
    assert_eq!(s.check(), Ok(()));
}

#[test]
fn key_checks_cover_ranges_prefixes_and_from_key() {
    let mut s = enabled_store();
    grant(&mut s, "r", perm(PermType::Read, "a", "b"));
    grant(&mut s, "r", perm(PermType::Read, "b", "c"));
    grant(&mut s, "r", perm(PermType::ReadWrite, "p/", "p0"));
    grant(&mut s, "r", perm(PermType::Write, "z", "\0"));
    let rev = s.revision();
    let check =
        |key: &str, end: &str, need| s.check_key("u", rev, key.as_bytes(), end.as_bytes(), need);
    let denied = Err(AuthError::PermissionDenied);
    // (key, range_end, need, allowed)
    let table = [
        ("a", "", PermType::Read, true),
        ("a", "c", PermType::Read, true),
        ("a", "d", PermType::Read, false),
        ("a", "", PermType::Write, false),
        ("p/x", "", PermType::Write, true),
        ("p/", "p0", PermType::Read, true),
        ("p/", "\0", PermType::Read, false),
        ("z", "\0", PermType::Write, true),
        ("zzz", "", PermType::Write, true),
        ("y", "\0", PermType::Write, false),
        ("q", "", PermType::Read, false),
    ];
    for (key, end, need, allowed) in table {
        let expected = if allowed { Ok(()) } else { denied };
        assert_eq!(check(key, end, need), expected, "{key:?} {end:?} {need:?}");
    }
    // Root may do anything; a stale check, no user and an unknown user are refused.
    assert_eq!(s.check_key(ROOT, rev, b"q", b"\0", PermType::Write), Ok(()));
    assert_eq!(
        s.check_key("u", rev - 1, b"a", b"", PermType::Read),
        Err(AuthError::AuthOldRevision)
    );
    assert_eq!(
        s.check_key("", rev, b"a", b"", PermType::Read),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(s.check_key("x", rev, b"a", b"", PermType::Read), denied);
}

#[test]
fn admin_checks_follow_etcd() {
    let mut s = enabled_store();
    assert_eq!(s.check_admin(ROOT), Ok(()));
    assert_eq!(s.check_admin("u"), Err(AuthError::PermissionDenied));
    assert_eq!(s.check_admin(""), Err(AuthError::UserEmpty));
    assert_eq!(s.check_admin("x"), Err(AuthError::UserNotFound));
    run(&mut s, AuthCommand::Disable).unwrap();
    assert_eq!(s.check_admin(""), Ok(()));
}

#[test]
fn passwords_are_verified_against_their_bcrypt_hash() {
    let mut s = AuthStore::new();
    let hash = hash_password("secret", 4).unwrap();
    assert!(!hash.contains("secret"));
    let add = AuthCommand::UserAdd {
        name: ROOT.into(),
        password_hash: hash,
        no_password: false,
    };
    run(&mut s, add).unwrap();
    let grant_root = AuthCommand::UserGrantRole {
        user: ROOT.into(),
        role: ROOT.into(),
    };
    run(&mut s, grant_root).unwrap();
    assert_eq!(
        s.verify_password(ROOT, "secret"),
        Err(AuthError::AuthNotEnabled)
    );
    run(&mut s, AuthCommand::Enable).unwrap();
    assert_eq!(s.verify_password(ROOT, "secret"), Ok(()));
    assert_eq!(s.verify_password(ROOT, "wrong"), Err(AuthError::AuthFailed));
    assert_eq!(s.verify_password("x", "secret"), Err(AuthError::AuthFailed));
}
