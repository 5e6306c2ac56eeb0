//! The auth suite: auth changes join the workload of a 3-member cluster under the cluster
//! nemesis, and [`crate::authcheck`] decides whether every permission verdict was one an auth
//! state in force at the time could give.
//!
//! Setup (before any fault): users `root` (root role), `alice` and `bob`; roles `ra` and `rb`
//! with one permission per fact below; auth enabled. Members hash with `--bcrypt-cost 4`.
//!
//! An administrator (root) changes one fact at a time, every 0.3–1.5 s: auth enabled, alice
//! holds `ra`, bob holds `rb`, bob holds `ra`, `ra` may read and write `/a/`, `ra` may read `/b/`,
//! `rb` may read `/a/`, `rb` may write `/b/`, alice's password is the second of two. A change is
//! "set the fact to v" (grant, revoke, enable, disable, change password): an attempt whose answer
//! was lost is retried until one is answered (a retry of a revoke that had taken effect answers
//! "not granted", which says the same), so every change ends with the fact known, and the fact is
//! not changed again for [`SETTLE`] after the last unanswered attempt (a request still on its
//! way to the leader may apply late; it sets the same value). Clients alice and bob read (one key
//! or the prefix) and write under `/a/` and `/b/` on random members with their tokens,
//! authenticating again when a token is refused; "permission denied" and success are verdicts,
//! every other answer is none. After healing, every member's auth store must show each fact as
//! the administrator last set it.
//!
//! Invariant: every random choice comes from madsim's seeded RNG (one seed replays the run).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::Rng;
use madsim::time::Instant;
use oxetcd::proto::authpb::{permission::Type as PermType, Permission};
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleGetRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthStatusRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, AuthenticateRequest, PutRequest,
    RangeRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::authcheck::{self, Answer, Change, Need, Verdict};
use crate::cluster::{SimCluster, StartState};
use crate::multi::{draw_cluster, nemesis_step, node_at, set_latency, set_packet_loss};
use crate::scenario::Report;

/// The facts the administrator changes (indexes into the fact vector).
pub const ENABLED: usize = 0;
pub const ALICE_RA: usize = 1;
pub const BOB_RB: usize = 2;
pub const BOB_RA: usize = 3;
/// `ra`: READWRITE on `/a/`.
pub const RA_A: usize = 4;
/// `ra`: READ on `/b/`.
pub const RA_B: usize = 5;
/// `rb`: READ on `/a/`.
pub const RB_A: usize = 6;
/// `rb`: WRITE on `/b/`.
pub const RB_B: usize = 7;
/// alice's password is [`ALICE_PASSWORDS`]`[1]`.
pub const ALICE_PW2: usize = 8;
const FACTS: usize = 9;
/// The state after setup.
pub const INITIAL: [bool; FACTS] = [true, true, true, false, true, true, true, true, false];

const ROOT_PASSWORD: &str = "root-pw";
const ALICE_PASSWORDS: [&str; 2] = ["alice-pw-1", "alice-pw-2"];
const BOB_PASSWORD: &str = "bob-pw";
/// A fact is not changed again for this long after an attempt on it went unanswered: longer
/// than a member's request timeout (5 s + two election timeouts of at most 1 s), after which
/// no member still holds the request unproposed.
pub const SETTLE: Duration = Duration::from_secs(15);
/// After the faults stop, a change in progress must be answered within this.
const RESOLVE_LIMIT: Duration = Duration::from_secs(60);
const START_WAIT: Duration = Duration::from_secs(20);

/// The permission behind a role-permission fact: (role, key, range end, type).
fn perm_of(fact: usize) -> (&'static str, &'static [u8], &'static [u8], PermType) {
    match fact {
        RA_A => ("ra", b"/a/", b"/a0", PermType::Readwrite),
        RA_B => ("ra", b"/b/", b"/b0", PermType::Read),
        RB_A => ("rb", b"/a/", b"/a0", PermType::Read),
        _ => ("rb", b"/b/", b"/b0", PermType::Write),
    }
}

/// The (user, role) behind a user-role fact.
fn role_of(fact: usize) -> (&'static str, &'static str) {
    match fact {
        ALICE_RA => ("alice", "ra"),
        BOB_RB => ("bob", "rb"),
        _ => ("bob", "ra"),
    }
}

/// One client operation: a read or write under `/a/` or `/b/`.
#[derive(Clone, Copy, Debug)]
struct ClientOp {
    write: bool,
    /// `'a'` or `'b'`.
    prefix: char,
    /// Reads: the whole prefix rather than one key.
    whole_prefix: bool,
}

/// What `user` needs to be allowed `op` while auth is on: any of these (role, permission) pairs.
fn grants(user: &str, op: ClientOp) -> Vec<(usize, usize)> {
    match (user, op.prefix, op.write) {
        ("alice", 'a', _) => vec![(ALICE_RA, RA_A)],
        ("alice", _, false) => vec![(ALICE_RA, RA_B)],
        ("alice", _, true) => vec![],
        (_, 'a', false) => vec![(BOB_RB, RB_A), (BOB_RA, RA_A)],
        (_, 'a', true) => vec![(BOB_RA, RA_A)],
        (_, _, false) => vec![(BOB_RA, RA_B)],
        (_, _, true) => vec![(BOB_RB, RB_B)],
    }
}

/// How an answer is taken.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Denied,
    /// The token was refused or missing: authenticate again (nothing happened).
    Reauth,
    /// The auth store moved under the request (nothing happened; ask again).
    Stale,
    /// Revoking what is not there: the fact already has the value asked for.
    NotGranted,
    AuthNotEnabled,
    BadPassword,
    /// Timeouts, lost connections, no leader: the request may or may not have taken effect.
    Unknown,
}

fn classify<T>(result: Result<Result<T, tonic::Status>, madsim::time::error::Elapsed>) -> Reply {
    let status = match result {
        Ok(Ok(_)) => return Reply::Ok,
        Ok(Err(status)) => status,
        Err(_) => return Reply::Unknown,
    };
    let m = status.message();
    if m.contains("permission denied") {
        Reply::Denied
    } else if m.contains("invalid auth token")
        || m.contains("user name is empty")
        || m.contains("user name not found")
    {
        Reply::Reauth
    } else if m.contains("revision") && m.contains("old") {
        Reply::Stale
    } else if m.contains("is not granted to the") {
        Reply::NotGranted
    } else if m.contains("authentication is not enabled") {
        Reply::AuthNotEnabled
    } else if m.contains("invalid user ID or password") {
        Reply::BadPassword
    } else {
        Reply::Unknown
    }
}

fn channel(endpoint: &str) -> Channel {
    match Endpoint::from_shared(endpoint.to_string()) {
        Ok(ep) => ep.connect_lazy(),
        Err(e) => panic!("bad endpoint {endpoint}: {e}"),
    }
}

fn request<T>(msg: T, token: &Option<String>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(value) = token.as_deref().and_then(|t| t.parse().ok()) {
        req.metadata_mut().insert("token", value);
    }
    req
}

/// What the run recorded for the checker.
#[derive(Default)]
struct Log {
    changes: Vec<Change>,
    answers: Vec<Answer>,
}

type SharedLog = Arc<Mutex<Log>>;

fn now_ns(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Authenticates `user`: `Ok(Some(token))`, `Ok(None)` when auth is off, `Err` otherwise.
async fn authenticate(
    endpoint: &str,
    user: &str,
    password: &str,
    limit: Duration,
) -> Result<Option<String>, Reply> {
    let mut auth = AuthClient::new(channel(endpoint));
    let req = AuthenticateRequest {
        name: user.to_string(),
        password: password.to_string(),
    };
    match madsim::time::timeout(limit, auth.authenticate(req)).await {
        Ok(Ok(resp)) => Ok(Some(resp.into_inner().token)),
        other => match classify(other) {
            Reply::AuthNotEnabled => Ok(None),
            reply => Err(reply),
        },
    }
}

/// Sends the administrator's request that sets `fact` to `to`.
async fn send_change(
    endpoint: &str,
    token: &Option<String>,
    fact: usize,
    to: bool,
    limit: Duration,
) -> Reply {
    let mut auth = AuthClient::new(channel(endpoint));
    macro_rules! call {
        ($method:ident, $msg:expr) => {
            classify(madsim::time::timeout(limit, auth.$method(request($msg, token))).await)
        };
    }
    match fact {
        ENABLED if to => call!(auth_enable, AuthEnableRequest {}),
        ENABLED => call!(auth_disable, AuthDisableRequest {}),
        ALICE_RA | BOB_RB | BOB_RA => {
            let (user, role) = role_of(fact);
            if to {
                call!(
                    user_grant_role,
                    AuthUserGrantRoleRequest {
                        user: user.into(),
                        role: role.into()
                    }
                )
            } else {
                call!(
                    user_revoke_role,
                    AuthUserRevokeRoleRequest {
                        name: user.into(),
                        role: role.into()
                    }
                )
            }
        }
        ALICE_PW2 => call!(
            user_change_password,
            AuthUserChangePasswordRequest {
                name: "alice".into(),
                password: ALICE_PASSWORDS[usize::from(to)].into(),
            }
        ),
        _ => {
            let (role, key, range_end, perm_type) = perm_of(fact);
            if to {
                call!(
                    role_grant_permission,
                    AuthRoleGrantPermissionRequest {
                        name: role.into(),
                        perm: Some(Permission {
                            perm_type: perm_type as i32,
                            key: key.to_vec(),
                            range_end: range_end.to_vec(),
                        }),
                    }
                )
            } else {
                call!(
                    role_revoke_permission,
                    AuthRoleRevokePermissionRequest {
                        role: role.into(),
                        key: key.to_vec(),
                        range_end: range_end.to_vec(),
                    }
                )
            }
        }
    }
}

/// The administrator: root's token (none while auth is off) and the endpoints.
struct Admin {
    endpoints: Vec<String>,
    token: Option<String>,
}

impl Admin {
    fn endpoint(&self) -> String {
        let i = madsim::rand::thread_rng().gen_range(0..self.endpoints.len());
        self.endpoints[i].clone()
    }

    /// Asks until `fact` is `to`; returns when that was answered, or `None` past `give_up`.
    /// `unanswered` gets the start of the last attempt whose answer was lost.
    async fn set(
        &mut self,
        fact: usize,
        to: bool,
        give_up: Instant,
        unanswered: &mut Option<Instant>,
    ) -> bool {
        while Instant::now() < give_up {
            let endpoint = self.endpoint();
            let limit = Duration::from_millis(madsim::rand::thread_rng().gen_range(500..4000));
            if self.token.is_none() {
                match authenticate(&endpoint, "root", ROOT_PASSWORD, limit).await {
                    Ok(token) => self.token = token,
                    Err(_) => {
                        madsim::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let attempt = Instant::now();
            match send_change(&endpoint, &self.token, fact, to, limit).await {
                Reply::Ok | Reply::NotGranted => return true,
                Reply::Reauth | Reply::AuthNotEnabled => self.token = None,
                Reply::Stale | Reply::Denied | Reply::BadPassword => {}
                Reply::Unknown => *unanswered = Some(attempt),
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// Creates the users and roles and enables auth; `Err` names the step that never succeeded.
async fn setup(endpoints: Vec<String>) -> Result<(), String> {
    let ep = endpoints[0].clone();
    let limit = Duration::from_secs(5);
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut auth = AuthClient::new(channel(&ep));
    let none = None;
    macro_rules! step {
        ($what:expr, $method:ident, $msg:expr) => {{
            loop {
                let reply = madsim::time::timeout(limit, auth.$method(request($msg, &none))).await;
                match reply {
                    Ok(Ok(_)) => break,
                    Ok(Err(s)) if s.message().contains("already exists") => break,
                    _ if Instant::now() > give_up => return Err(format!("setup: {}", $what)),
                    _ => madsim::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }};
    }
    for (user, pw) in [
        ("root", ROOT_PASSWORD),
        ("alice", ALICE_PASSWORDS[0]),
        ("bob", BOB_PASSWORD),
    ] {
        step!(
            format!("add user {user}"),
            user_add,
            AuthUserAddRequest {
                name: user.into(),
                password: pw.into(),
                options: None,
            }
        );
    }
    for role in ["root", "ra", "rb"] {
        step!(
            format!("add role {role}"),
            role_add,
            AuthRoleAddRequest { name: role.into() }
        );
    }
    step!(
        "grant root",
        user_grant_role,
        AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into()
        }
    );
    let mut admin = Admin {
        endpoints,
        token: None,
    };
    // Auth last: every other fact is set while auth is still off.
    for fact in (1..FACTS).chain([ENABLED]) {
        if INITIAL[fact] && !admin.set(fact, true, give_up, &mut None).await {
            return Err(format!("setup: fact {fact}"));
        }
    }
    Ok(())
}

/// The administrator's loop: one change at a time until `stop_at`, the change in progress then
/// finished (or given up on) before returning.
async fn run_admin(endpoints: Vec<String>, log: SharedLog, origin: Instant, stop_at: Instant) {
    let mut admin = Admin {
        endpoints,
        token: None,
    };
    let mut facts = INITIAL;
    let mut settle_until = [origin; FACTS];
    while Instant::now() < stop_at {
        let (pause, fact) = {
            let mut rng = madsim::rand::thread_rng();
            let fact = if rng.gen_bool(0.1) {
                ENABLED
            } else {
                rng.gen_range(1..FACTS)
            };
            (Duration::from_millis(rng.gen_range(300..1500)), fact)
        };
        madsim::time::sleep(pause).await;
        if Instant::now() < settle_until[fact] {
            continue;
        }
        let to = !facts[fact];
        let start_ns = now_ns(origin);
        let mut unanswered = None;
        let done = admin
            .set(fact, to, stop_at + RESOLVE_LIMIT, &mut unanswered)
            .await;
        if let Some(at) = unanswered {
            settle_until[fact] = at + SETTLE;
        }
        let change = Change {
            fact,
            to,
            start_ns,
            end_ns: now_ns(origin),
            applied: done.then_some(true),
        };
        tracing::info!(?change, "auth change");
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .changes
            .push(change);
        if !done {
            // Its outcome is unknown for good: stop changing things.
            return;
        }
        facts[fact] = to;
    }
}

/// Sends one client operation with `token`.
async fn send_op(endpoint: &str, token: &Option<String>, op: ClientOp, limit: Duration) -> Reply {
    let key = format!(
        "/{}/k{}",
        op.prefix,
        madsim::rand::thread_rng().gen_range(0..3)
    );
    let mut kv = KvClient::new(channel(endpoint));
    if op.write {
        let req = PutRequest {
            key: key.into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        classify(madsim::time::timeout(limit, kv.put(request(req, token))).await)
    } else {
        let req = if op.whole_prefix {
            RangeRequest {
                key: format!("/{}/", op.prefix).into_bytes(),
                range_end: format!("/{}0", op.prefix).into_bytes(),
                ..Default::default()
            }
        } else {
            RangeRequest {
                key: key.into_bytes(),
                ..Default::default()
            }
        };
        classify(madsim::time::timeout(limit, kv.range(request(req, token))).await)
    }
}

/// A client: `user`'s operations on random members until `stop_at`.
async fn run_user(
    user: &'static str,
    endpoints: Vec<String>,
    log: SharedLog,
    origin: Instant,
    stop_at: Instant,
) {
    // The token, if authenticated (`Some(None)`: auth was off when last asked).
    let mut token: Option<Option<String>> = None;
    let mut password = 0usize;
    while Instant::now() < stop_at {
        let (endpoint, limit, think, op) = {
            let mut rng = madsim::rand::thread_rng();
            let op = ClientOp {
                write: rng.gen_bool(0.4),
                prefix: if rng.gen_bool(0.5) { 'a' } else { 'b' },
                whole_prefix: rng.gen_bool(0.3),
            };
            (
                endpoints[rng.gen_range(0..endpoints.len())].clone(),
                Duration::from_millis(rng.gen_range(300..3000)),
                Duration::from_millis(rng.gen_range(20..200)),
                op,
            )
        };
        madsim::time::sleep(think).await;
        let Some(current) = token.clone() else {
            let pw = if user == "alice" {
                ALICE_PASSWORDS[password]
            } else {
                BOB_PASSWORD
            };
            let start_ns = now_ns(origin);
            match authenticate(&endpoint, user, pw, limit).await {
                Ok(got) => {
                    if got.is_some() && user == "alice" {
                        let answer = Answer {
                            what: format!("alice authenticates with password {}", password + 1),
                            start_ns,
                            end_ns: now_ns(origin),
                            verdict: Verdict::LoggedIn {
                                enabled: ENABLED,
                                password: ALICE_PW2,
                                value: password == 1,
                            },
                        };
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .answers
                            .push(answer);
                    }
                    token = Some(got);
                }
                Err(Reply::BadPassword) if user == "alice" => password = 1 - password,
                Err(_) => {}
            }
            continue;
        };
        let need = Need {
            enabled: ENABLED,
            grants: if current.is_some() {
                grants(user, op)
            } else {
                Vec::new()
            },
        };
        let start_ns = now_ns(origin);
        let reply = send_op(&endpoint, &current, op, limit).await;
        let verdict = match reply {
            Reply::Ok => Some(Verdict::Allowed(need)),
            Reply::Denied => Some(Verdict::Refused(need)),
            Reply::Reauth => {
                token = None;
                None
            }
            _ => None,
        };
        if let Some(verdict) = verdict {
            let what = format!(
                "{user} {} /{}/{} at {endpoint} ({})",
                if op.write { "writes" } else { "reads" },
                op.prefix,
                if op.whole_prefix && !op.write {
                    " (whole prefix)"
                } else {
                    ""
                },
                if current.is_some() {
                    "with a token"
                } else {
                    "without a token"
                }
            );
            let answer = Answer {
                what,
                start_ns,
                end_ns: now_ns(origin),
                verdict,
            };
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .answers
                .push(answer);
        }
    }
}

/// Every fact as member `endpoint` shows it (linearizably), or `None` if it could not tell.
async fn read_facts(endpoint: String) -> Option<[Option<bool>; FACTS]> {
    let limit = Duration::from_secs(5);
    let token = match authenticate(&endpoint, "root", ROOT_PASSWORD, limit).await {
        Ok(token) => token,
        Err(_) => return None,
    };
    let mut auth = AuthClient::new(channel(&endpoint));
    let mut facts = [None; FACTS];
    let status = madsim::time::timeout(
        limit,
        auth.auth_status(request(AuthStatusRequest {}, &token)),
    )
    .await
    .ok()?
    .ok()?
    .into_inner();
    facts[ENABLED] = Some(status.enabled);
    for user in ["alice", "bob"] {
        let req = AuthUserGetRequest { name: user.into() };
        let roles = madsim::time::timeout(limit, auth.user_get(request(req, &token)))
            .await
            .ok()?
            .ok()?
            .into_inner()
            .roles;
        for fact in [ALICE_RA, BOB_RB, BOB_RA] {
            let (u, role) = role_of(fact);
            if u == user {
                facts[fact] = Some(roles.iter().any(|r| r == role));
            }
        }
    }
    for role in ["ra", "rb"] {
        let req = AuthRoleGetRequest { role: role.into() };
        let perms = madsim::time::timeout(limit, auth.role_get(request(req, &token)))
            .await
            .ok()?
            .ok()?
            .into_inner()
            .perm;
        for fact in [RA_A, RA_B, RB_A, RB_B] {
            let (r, key, range_end, perm_type) = perm_of(fact);
            if r == role {
                facts[fact] = Some(perms.iter().any(|p| {
                    p.key == key && p.range_end == range_end && p.perm_type == perm_type as i32
                }));
            }
        }
    }
    Some(facts)
}

/// Runs one auth scenario on the current madsim runtime: `members` members, `run_secs` of
/// faults and traffic.
pub async fn run(members: usize, run_secs: u64) -> Report {
    let started = Instant::now();
    let mut report = Report {
        seed: madsim::runtime::Handle::current().seed(),
        ..Report::default()
    };
    let mut config = draw_cluster(members);
    config.extra_flags = vec!["--bcrypt-cost".into(), "4".into()];
    let cluster = SimCluster::start(config);
    report.setup = format!("{:?}", cluster.config);
    let base_latency_ms = madsim::rand::thread_rng().gen_range(0..=cluster.config.heartbeat_ms / 2);
    set_latency(base_latency_ms);
    for i in 0..members {
        if let StartState::Failed(e) = cluster.wait_started(i, START_WAIT).await {
            report
                .violations
                .push(format!("m{} failed to start: {e}", i + 1));
            return report;
        }
    }
    let endpoints: Vec<String> = (0..members).map(|i| cluster.endpoint(i)).collect();
    let admin_node = node_at("admin", [10, 0, 3, 1]);
    if let Err(e) = admin_node
        .spawn(setup(endpoints.clone()))
        .await
        .unwrap_or_else(|_| Err("setup: the task died".into()))
    {
        report.violations.push(e);
        return report;
    }
    let origin = cluster.origin;
    let log = SharedLog::default();
    let stop_at = Instant::now() + Duration::from_secs(run_secs);
    let admin = admin_node.spawn(run_admin(endpoints.clone(), log.clone(), origin, stop_at));
    let users: Vec<_> = ["alice", "bob"]
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            node_at(user, [10, 0, 3, 2 + i as u8]).spawn(run_user(
                user,
                endpoints.clone(),
                log.clone(),
                origin,
                stop_at,
            ))
        })
        .collect();
    let ops_node = node_at("nemesis", [10, 0, 2, 2]);
    while Instant::now() < stop_at {
        nemesis_step(&cluster, &ops_node, &mut report, base_latency_ms, false).await;
    }
    for u in users {
        let _ = u.await;
    }
    cluster.heal();
    set_latency(base_latency_ms);
    set_packet_loss(0.0);
    let _ = admin.await;
    let Log { changes, answers } =
        std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    report.auth_changes = changes.len();
    report.auth_verdicts = answers.len();
    report.ops = answers.len();
    // The facts as the administrator left them (`None` after a change never answered).
    let mut last: [Option<bool>; FACTS] = INITIAL.map(Some);
    for c in &changes {
        last[c.fact] = c.applied.map(|_| c.to);
    }
    let checker = node_at("checker", [10, 0, 2, 1]);
    for (i, ep) in endpoints.iter().enumerate() {
        let shown = checker.spawn(read_facts(ep.clone())).await.ok().flatten();
        match shown {
            None => report.violations.push(format!(
                "auth: m{} could not show its auth state after healing",
                i + 1
            )),
            Some(shown) => {
                for fact in 0..FACTS {
                    if let (Some(want), Some(got)) = (last[fact], shown[fact]) {
                        if want != got {
                            report.violations.push(format!(
                                "auth: m{} shows fact {fact} as {got}, the last change set {want}",
                                i + 1
                            ));
                        }
                    }
                }
            }
        }
    }
    if changes.is_empty() || answers.is_empty() {
        report.violations.push(format!(
            "auth: the run decided too little to check ({} changes, {} verdicts)",
            changes.len(),
            answers.len()
        ));
    }
    if let Err(v) = authcheck::check(&INITIAL, &changes, &answers) {
        report.violations.push(format!("auth: {v}"));
    }
    report.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}
