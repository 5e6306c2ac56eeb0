//! `member`, `endpoint`, `alarm`, `defrag`, `move-leader`: the cluster and maintenance commands
//! of etcdctl 3.5, with its outputs. Commands that visit every endpoint (`endpoint ...`,
//! `defrag`) take `--cluster` to visit every member's client URLs instead.

use std::time::Instant;

use clap::{Args, Subcommand};

use oxetcd::proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd::proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, HashKvRequest, Member,
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest, RangeRequest, StatusRequest, StatusResponse,
};

use super::client::{Client, Global};
use super::kv::unsupported;
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Lists all members in the cluster
    List {
        /// Use linearizable fetch
        #[arg(long)]
        consistency_linearizable: bool,
    },
    /// Adds a member into the cluster
    Add {
        #[arg(value_name = "NAME")]
        args: Vec<String>,
        /// comma separated peer URLs for the new member.
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member from the cluster
    Remove {
        #[arg(value_name = "MEMBER_ID")]
        args: Vec<String>,
    },
    /// Updates a member in the cluster
    Update {
        #[arg(value_name = "MEMBER_ID")]
        args: Vec<String>,
        /// comma separated peer URLs for the updated member.
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
    },
    /// Promotes a non-voting member in the cluster
    Promote {
        #[arg(value_name = "MEMBER_ID")]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(EndpointArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(EndpointArgs),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// the revision to hash at (0 means the latest revision)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    cluster: bool,
}

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm,
    /// Lists all alarms
    List,
}

#[derive(Debug, Args)]
pub struct DefragArgs {
    /// defragment all endpoints from the cluster member list
    #[arg(long)]
    cluster: bool,
}

#[derive(Debug, Args)]
pub struct MoveLeaderArgs {
    /// the member ID (hex) of the transferee
    #[arg(value_name = "TRANSFEREE_ID")]
    args: Vec<String>,
}

/// The first argument, or etcdctl's complaint about its absence.
fn first<'a>(args: &'a [String], missing: &str) -> Result<&'a str, CtlError> {
    args.first()
        .map(String::as_str)
        .ok_or_else(|| CtlError::bad_args(missing))
}

fn member_id(text: &str) -> Result<u64, CtlError> {
    u64::from_str_radix(text, 16).map_err(|e| {
        CtlError::bad_args(format!(
            "bad member ID arg ({}), expecting ID in Hex",
            super::kv::go_parse_error("ParseUint", text, &e)
        ))
    })
}

fn urls(list: &str) -> Vec<String> {
    list.split(',').map(str::to_string).collect()
}

fn member_json(m: &Member) -> String {
    Obj::new()
        .u64("ID", m.id)
        .str("name", &m.name)
        .strings("peerURLs", &m.peer_ur_ls)
        .strings("clientURLs", &m.client_ur_ls)
        .bool("isLearner", m.is_learner)
        .finish()
}

fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let status = if m.name.is_empty() {
                "unstarted"
            } else {
                "started"
            };
            vec![
                format!("{:x}", m.id),
                status.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub async fn member(g: &Global, command: MemberCommand) -> Result<(), CtlError> {
    let client = Client::connect(g).await?;
    let cluster = |c| ClusterClient::new(c);
    match command {
        MemberCommand::List {
            consistency_linearizable,
        } => {
            let request = MemberListRequest {
                linearizable: consistency_linearizable,
            };
            let r = client
                .call(
                    |c, r| async move { cluster(c).member_list(r).await },
                    request,
                )
                .await?;
            let rows = member_rows(&r.members);
            let out = match g.write_out {
                Format::Simple => rows.iter().map(|row| row.join(", ") + "\n").collect(),
                Format::Table => print::table(
                    &[
                        "ID",
                        "STATUS",
                        "NAME",
                        "PEER ADDRS",
                        "CLIENT ADDRS",
                        "IS LEARNER",
                    ],
                    &rows,
                ),
                Format::Json => {
                    Obj::new()
                        .raw("header", &print::header(&r.header))
                        .objects("members", r.members.iter().map(member_json).collect())
                        .finish()
                        + "\n"
                }
                Format::Fields => {
                    let mut out = print::fields_header(&r.header);
                    for m in &r.members {
                        out.push_str(&format!(
                            "\"ID\" : {}\n\"Name\" : {}\n",
                            m.id,
                            print::go_quote(&m.name)
                        ));
                        for url in &m.peer_ur_ls {
                            out.push_str(&format!("\"PeerURL\" : {}\n", print::go_quote(url)));
                        }
                        for url in &m.client_ur_ls {
                            out.push_str(&format!("\"ClientURL\" : {}\n", print::go_quote(url)));
                        }
                        out.push_str(&format!("\"IsLearner\" : {}\n\n", m.is_learner));
                    }
                    out
                }
                Format::Protobuf => return print::write_raw(&print::protobuf(&r)),
            };
            print!("{out}");
        }
        MemberCommand::Add {
            args,
            peer_urls,
            learner,
        } => {
            let name = first(&args, "member name not provided")?.to_string();
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let request = MemberAddRequest {
                peer_ur_ls: urls(&peer_urls),
                is_learner: learner,
            };
            let r = client
                .call(
                    |c, r| async move { cluster(c).member_add(r).await },
                    request,
                )
                .await?;
            let added = r.member.clone().unwrap_or_default();
            let header = r.header.unwrap_or_default();
            match g.write_out {
                Format::Simple => {
                    println!(
                        "Member {:16x} added to cluster {:16x}\n",
                        added.id, header.cluster_id
                    );
                    let mut initial = Vec::new();
                    for m in &r.members {
                        let member_name = if m.id == added.id { &name } else { &m.name };
                        if member_name.is_empty() {
                            continue;
                        }
                        for url in &m.peer_ur_ls {
                            initial.push(format!("{member_name}={url}"));
                        }
                    }
                    println!("ETCD_NAME=\"{name}\"");
                    println!("ETCD_INITIAL_CLUSTER=\"{}\"", initial.join(","));
                    println!(
                        "ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"",
                        added.peer_ur_ls.join(",")
                    );
                    println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
                }
                Format::Json => println!(
                    "{}",
                    Obj::new()
                        .raw("header", &print::header(&r.header))
                        .raw("member", &member_json(&added))
                        .objects("members", r.members.iter().map(member_json).collect())
                        .finish()
                ),
                other => return Err(unsupported(other)),
            }
        }
        MemberCommand::Remove { args } => {
            let id = member_id(first(&args, "member ID is not provided")?)?;
            let r = client
                .call(
                    |c, r| async move { cluster(c).member_remove(r).await },
                    MemberRemoveRequest { id },
                )
                .await?;
            membership_done(g, "removed from", id, &r.header, &r.members)?;
        }
        MemberCommand::Update { args, peer_urls } => {
            let id = member_id(first(&args, "member ID is not provided")?)?;
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let request = MemberUpdateRequest {
                id,
                peer_ur_ls: urls(&peer_urls),
            };
            let r = client
                .call(
                    |c, r| async move { cluster(c).member_update(r).await },
                    request,
                )
                .await?;
            membership_done(g, "updated in", id, &r.header, &r.members)?;
        }
        MemberCommand::Promote { args } => {
            let id = member_id(first(&args, "member ID is not provided")?)?;
            let r = client
                .call(
                    |c, r| async move { cluster(c).member_promote(r).await },
                    MemberPromoteRequest { id },
                )
                .await?;
            membership_done(g, "promoted in", id, &r.header, &r.members)?;
        }
    }
    Ok(())
}

fn membership_done(
    g: &Global,
    what: &str,
    id: u64,
    header: &Option<oxetcd::proto::etcdserverpb::ResponseHeader>,
    members: &[Member],
) -> Result<(), CtlError> {
    match g.write_out {
        Format::Simple => {
            let cluster_id = header.unwrap_or_default().cluster_id;
            println!("Member {id:16x} {what} cluster {cluster_id:16x}");
        }
        Format::Json => println!(
            "{}",
            Obj::new()
                .raw("header", &print::header(header))
                .objects("members", members.iter().map(member_json).collect())
                .finish()
        ),
        other => return Err(unsupported(other)),
    }
    Ok(())
}

/// The endpoints a multi-endpoint command visits: `--endpoints`, or with `--cluster` every
/// member's client URLs (etcdctl's order: members as listed, URLs as listed, no repeats).
async fn endpoints_of(g: &Global, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return Ok(g.endpoints.clone());
    }
    let client = Client::connect(g).await?;
    let r = client
        .call(
            |c, r| async move { ClusterClient::new(c).member_list(r).await },
            MemberListRequest::default(),
        )
        .await?;
    let mut out: Vec<String> = Vec::new();
    for m in &r.members {
        for url in &m.client_ur_ls {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
    }
    Ok(out)
}

pub async fn endpoint(g: &Global, command: EndpointCommand) -> Result<(), CtlError> {
    match command {
        EndpointCommand::Health(a) => health(g, &endpoints_of(g, a.cluster).await?).await,
        EndpointCommand::Status(a) => status(g, &endpoints_of(g, a.cluster).await?).await,
        EndpointCommand::Hashkv { endpoints, rev } => {
            hashkv(g, &endpoints_of(g, endpoints.cluster).await?, rev).await
        }
    }
}

struct Health {
    endpoint: String,
    healthy: bool,
    took: String,
    error: String,
}

async fn check_health(g: &Global, endpoint: &str) -> Health {
    let start = Instant::now();
    let mut result = Health {
        endpoint: endpoint.to_string(),
        healthy: false,
        took: String::new(),
        error: String::new(),
    };
    let client = match Client::connect_to(g, endpoint).await {
        Ok(c) => c,
        Err(e) => {
            result.error = e.message;
            result.took = print::go_duration(start.elapsed());
            return result;
        }
    };
    let read = RangeRequest {
        key: b"health".to_vec(),
        ..RangeRequest::default()
    };
    let got = client
        .call(|c, r| async move { KvClient::new(c).range(r).await }, read)
        .await;
    // A permission error still proves the member committed the read (etcdctl's rule).
    match got {
        Ok(_) => {}
        Err(e) if e.message == "etcdserver: permission denied" => {}
        Err(e) => {
            result.error = e.message;
            result.took = print::go_duration(start.elapsed());
            return result;
        }
    }
    let alarms = client
        .call(
            |c, r| async move { MaintenanceClient::new(c).alarm(r).await },
            AlarmRequest::default(),
        )
        .await;
    result.took = print::go_duration(start.elapsed());
    match alarms {
        Ok(r) if !r.alarms.is_empty() => {
            let names: Vec<&str> = r
                .alarms
                .iter()
                .map(|a| alarm_name(a.alarm))
                .collect::<Vec<_>>();
            result.error = format!("Active Alarm(s): {}", names.join(" "));
        }
        Ok(_) => result.healthy = true,
        Err(e) => result.error = format!("Unable to fetch the alarm list: {}", e.message),
    }
    result
}

fn alarm_name(alarm: i32) -> &'static str {
    AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name())
}

async fn health(g: &Global, endpoints: &[String]) -> Result<(), CtlError> {
    let mut results = Vec::new();
    for endpoint in endpoints {
        results.push(check_health(g, endpoint).await);
    }
    match g.write_out {
        Format::Simple => {
            for h in &results {
                if h.healthy {
                    println!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint, h.took
                    );
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.endpoint, h.error
                    );
                }
            }
        }
        Format::Json => {
            let items: Vec<String> = results
                .iter()
                .map(|h| {
                    Obj::new()
                        .str_always("endpoint", &h.endpoint)
                        .raw("health", if h.healthy { "true" } else { "false" })
                        .str("took", &h.took)
                        .str("error", &h.error)
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|h| {
                    vec![
                        h.endpoint.clone(),
                        h.healthy.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                print::table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows)
            );
        }
        other => return Err(unsupported(other)),
    }
    if results.iter().all(|h| h.healthy) {
        Ok(())
    } else {
        Err(CtlError::general("unhealthy cluster"))
    }
}

fn status_json(s: &StatusResponse) -> String {
    Obj::new()
        .raw("header", &print::header(&s.header))
        .str("version", &s.version)
        .i64("dbSize", s.db_size)
        .u64("leader", s.leader)
        .u64("raftIndex", s.raft_index)
        .u64("raftTerm", s.raft_term)
        .u64("raftAppliedIndex", s.raft_applied_index)
        .strings("errors", &s.errors)
        .i64("dbSizeInUse", s.db_size_in_use)
        .bool("isLearner", s.is_learner)
        .finish()
}

async fn status(g: &Global, endpoints: &[String]) -> Result<(), CtlError> {
    let mut statuses = Vec::new();
    let mut failed = false;
    for endpoint in endpoints {
        let got = match Client::connect_to(g, endpoint).await {
            Ok(client) => {
                client
                    .call(
                        |c, r| async move { MaintenanceClient::new(c).status(r).await },
                        StatusRequest::default(),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match got {
            Ok(s) => statuses.push((endpoint.clone(), s)),
            Err(e) => {
                failed = true;
                eprintln!(
                    "Failed to get the status of endpoint {endpoint} ({})",
                    e.message
                );
            }
        }
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|(ep, s)| {
            let id = s.header.unwrap_or_default().member_id;
            vec![
                ep.clone(),
                format!("{id:x}"),
                s.version.clone(),
                print::human_bytes(u64::try_from(s.db_size).unwrap_or(0)),
                (s.leader == id).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
            ]
        })
        .collect();
    match g.write_out {
        Format::Simple => {
            for row in &rows {
                println!("{}", row.join(", "));
            }
        }
        Format::Table => print!(
            "{}",
            print::table(
                &[
                    "ENDPOINT",
                    "ID",
                    "VERSION",
                    "DB SIZE",
                    "IS LEADER",
                    "IS LEARNER",
                    "RAFT TERM",
                    "RAFT INDEX",
                    "RAFT APPLIED INDEX",
                    "ERRORS",
                ],
                &rows,
            )
        ),
        Format::Fields => {
            for (ep, s) in &statuses {
                let errors: Vec<String> = s.errors.iter().map(|e| print::go_quote(e)).collect();
                print!(
                    "{}\"Version\" : {}\n\"DBSize\" : {}\n\"Leader\" : {}\n\
                     \"IsLearner\" : {}\n\"RaftIndex\" : {}\n\"RaftTerm\" : {}\n\
                     \"RaftAppliedIndex\" : {}\n\"Errors\" : [{}]\n\"Endpoint\" : {}\n\n",
                    print::fields_header(&s.header),
                    print::go_quote(&s.version),
                    s.db_size,
                    s.leader,
                    s.is_learner,
                    s.raft_index,
                    s.raft_term,
                    s.raft_applied_index,
                    errors.join(" "),
                    print::go_quote(ep)
                );
            }
        }
        Format::Json => {
            let items: Vec<String> = statuses
                .iter()
                .map(|(ep, s)| {
                    Obj::new()
                        .str_always("Endpoint", ep)
                        .raw("Status", &status_json(s))
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        other => return Err(unsupported(other)),
    }
    if failed {
        // As etcdctl: the failed endpoints are named above; exit 1 without an `Error:` line.
        return Err(CtlError::general(""));
    }
    Ok(())
}

async fn hashkv(g: &Global, endpoints: &[String], revision: i64) -> Result<(), CtlError> {
    let mut hashes = Vec::new();
    for endpoint in endpoints {
        let got = match Client::connect_to(g, endpoint).await {
            Ok(client) => {
                client
                    .call(
                        |c, r| async move { MaintenanceClient::new(c).hash_kv(r).await },
                        HashKvRequest { revision },
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        // As etcdctl: the endpoint's failure on its own line, then the command fails with it.
        let r = got.inspect_err(|e| {
            eprintln!(
                "Failed to get the hash of endpoint {endpoint} ({})",
                e.message
            );
        })?;
        hashes.push((endpoint.clone(), r));
    }
    match g.write_out {
        Format::Simple => {
            for (ep, r) in &hashes {
                println!("{ep}, {}", r.hash);
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = hashes
                .iter()
                .map(|(ep, r)| vec![ep.clone(), r.hash.to_string()])
                .collect();
            print!("{}", print::table(&["ENDPOINT", "HASH"], &rows));
        }
        Format::Json => {
            let items: Vec<String> = hashes
                .iter()
                .map(|(ep, r)| {
                    let inner = Obj::new()
                        .raw("header", &print::header(&r.header))
                        .u64("hash", u64::from(r.hash))
                        .i64("compact_revision", r.compact_revision)
                        .finish();
                    Obj::new()
                        .str_always("Endpoint", ep)
                        .raw("HashKV", &inner)
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}

fn show_alarms(g: &Global, r: &AlarmResponse) -> Result<(), CtlError> {
    match g.write_out {
        Format::Simple => {
            for a in &r.alarms {
                println!("memberID:{} alarm:{}", a.member_id, alarm_name(a.alarm));
            }
        }
        Format::Json => {
            let items: Vec<String> = r
                .alarms
                .iter()
                .map(|a| {
                    let obj = Obj::new().u64("memberID", a.member_id);
                    if a.alarm == 0 {
                        obj.finish()
                    } else {
                        obj.raw("alarm", &a.alarm.to_string()).finish()
                    }
                })
                .collect();
            println!(
                "{}",
                Obj::new()
                    .raw("header", &print::header(&r.header))
                    .objects("alarms", items)
                    .finish()
            );
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}

pub async fn alarm(g: &Global, command: AlarmCommand) -> Result<(), CtlError> {
    let client = Client::connect(g).await?;
    let list = client
        .call(
            |c, r| async move { MaintenanceClient::new(c).alarm(r).await },
            AlarmRequest::default(),
        )
        .await?;
    match command {
        AlarmCommand::List => show_alarms(g, &list),
        AlarmCommand::Disarm => {
            let mut last = AlarmResponse {
                header: list.header,
                alarms: Vec::new(),
            };
            for a in &list.alarms {
                let request = AlarmRequest {
                    action: AlarmAction::Deactivate as i32,
                    member_id: a.member_id,
                    alarm: a.alarm,
                };
                let r = client
                    .call(
                        |c, r| async move { MaintenanceClient::new(c).alarm(r).await },
                        request,
                    )
                    .await?;
                last.header = r.header;
                last.alarms.extend(r.alarms);
            }
            show_alarms(g, &last)
        }
    }
}

pub async fn defrag(g: &Global, a: DefragArgs) -> Result<(), CtlError> {
    let mut failed = false;
    for endpoint in endpoints_of(g, a.cluster).await? {
        let done = match Client::connect_to(g, &endpoint).await {
            Ok(client) => client
                .call(
                    |c, r| async move { MaintenanceClient::new(c).defragment(r).await },
                    DefragmentRequest::default(),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => println!("Finished defragmenting etcd member[{endpoint}]"),
            Err(e) => {
                failed = true;
                eprintln!(
                    "Failed to defragment etcd member[{endpoint}] ({})",
                    e.message
                );
            }
        }
    }
    if failed {
        // As etcdctl: the failed endpoints are named above; exit 1 without an `Error:` line.
        return Err(CtlError::general(""));
    }
    Ok(())
}

pub async fn move_leader(g: &Global, a: MoveLeaderArgs) -> Result<(), CtlError> {
    let text = first(&a.args, "move-leader command needs 1 argument")?;
    let target = u64::from_str_radix(text, 16)
        .map_err(|e| CtlError::bad_args(super::kv::go_parse_error("ParseUint", text, &e)))?;
    // The request must reach the current leader: find it among --endpoints.
    let mut leader: Option<(Client, u64)> = None;
    for endpoint in &g.endpoints {
        // As etcdctl: an endpoint that does not answer its status ends the command.
        let client = Client::connect_to(g, endpoint).await?;
        let s = client
            .call(
                |c, r| async move { MaintenanceClient::new(c).status(r).await },
                StatusRequest::default(),
            )
            .await?;
        let id = s.header.unwrap_or_default().member_id;
        if s.leader == id {
            leader = Some((client, id));
            break;
        }
    }
    let Some((client, leader_id)) = leader else {
        return Err(CtlError::general(format!(
            "no leader endpoint given at [{}]",
            g.endpoints.join(" ")
        )));
    };
    client
        .call(
            |c, r| async move { MaintenanceClient::new(c).move_leader(r).await },
            MoveLeaderRequest { target_id: target },
        )
        .await?;
    println!("Leadership transferred from {leader_id:x} to {target:x}");
    Ok(())
}
