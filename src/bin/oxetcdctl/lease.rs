//! `lease grant|revoke|timetolive|list|keep-alive`: etcdctl 3.5's lease commands and outputs.
//! Their JSON is that of clientv3's response structs, which embed the header (its fields sit
//! at the top level) and spell some fields in their own way (`granted-ttl`).

use clap::Subcommand;

use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, ResponseHeader,
};

use super::client::{Client, Global};
use super::kv::{go_parse_error, unsupported};
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases
    Grant {
        #[arg(value_name = "TTL")]
        args: Vec<String>,
    },
    /// Revokes leases
    Revoke {
        #[arg(value_name = "LEASE_ID")]
        args: Vec<String>,
    },
    /// Get lease information
    Timetolive {
        #[arg(value_name = "LEASE_ID")]
        args: Vec<String>,
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive {
        #[arg(value_name = "LEASE_ID")]
        args: Vec<String>,
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
    },
}

fn lease_id(text: &str) -> Result<i64, CtlError> {
    i64::from_str_radix(text, 16).map_err(|e| {
        CtlError::bad_args(format!(
            "bad lease ID arg ({}), expecting ID in Hex",
            go_parse_error("ParseInt", text, &e)
        ))
    })
}

fn header_of(h: &Option<ResponseHeader>) -> Obj {
    print::header_fields(Obj::new(), &h.unwrap_or_default())
}

pub async fn run(g: &Global, command: LeaseCommand) -> Result<(), CtlError> {
    let client = Client::connect(g).await?;
    let lease = |c| LeaseClient::new(c);
    match command {
        LeaseCommand::Grant { args } => {
            let ttl = args
                .first()
                .ok_or_else(|| CtlError::bad_args("lease grant command needs TTL argument"))?;
            let ttl: i64 = ttl.parse().map_err(|e| {
                CtlError::bad_args(format!("bad TTL ({})", go_parse_error("ParseInt", ttl, &e)))
            })?;
            let r = client
                .call(
                    |c, r| async move { lease(c).lease_grant(r).await },
                    LeaseGrantRequest { ttl, id: 0 },
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl)
                }
                Format::Json => println!(
                    "{}",
                    header_of(&r.header)
                        .raw("ID", &r.id.to_string())
                        .raw("TTL", &r.ttl.to_string())
                        .str_always("Error", &r.error)
                        .finish()
                ),
                Format::Fields => print!(
                    "{}\"ID\" : {}\n\"TTL\" : {}\n",
                    print::fields_header(&r.header),
                    r.id,
                    r.ttl
                ),
                other => return Err(unsupported(other)),
            }
        }
        LeaseCommand::Revoke { args } => {
            let text = args
                .first()
                .ok_or_else(|| CtlError::bad_args("lease revoke command needs 1 argument"))?;
            let id = lease_id(text)?;
            let r = client
                .call(
                    |c, r| async move { lease(c).lease_revoke(r).await },
                    LeaseRevokeRequest { id },
                )
                .await
                .map_err(|e| {
                    CtlError::general(format!("failed to revoke lease ({})", e.message))
                })?;
            match g.write_out {
                Format::Simple => println!("lease {id:016x} revoked"),
                Format::Json => println!(
                    "{}",
                    Obj::new().raw("header", &print::header(&r.header)).finish()
                ),
                other => return Err(unsupported(other)),
            }
        }
        LeaseCommand::Timetolive { args, keys } => {
            let text = args.first().ok_or_else(|| {
                CtlError::bad_args("lease timetolive command needs lease ID as argument")
            })?;
            let id = lease_id(text)?;
            let r = client
                .call(
                    |c, r| async move { lease(c).lease_time_to_live(r).await },
                    LeaseTimeToLiveRequest { id, keys },
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    if r.granted_ttl == 0 && r.ttl == -1 {
                        println!("lease {:016x} already expired", r.id);
                    } else {
                        let mut text = format!(
                            "lease {:016x} granted with TTL({}s), remaining({}s)",
                            r.id, r.granted_ttl, r.ttl
                        );
                        if keys {
                            let names: Vec<String> = r
                                .keys
                                .iter()
                                .map(|k| String::from_utf8_lossy(k).into_owned())
                                .collect();
                            text.push_str(&format!(", attached keys([{}])", names.join(" ")));
                        }
                        println!("{text}");
                    }
                }
                Format::Json => {
                    let keys_json = if r.keys.is_empty() {
                        "null".to_string()
                    } else {
                        let items: Vec<String> = r
                            .keys
                            .iter()
                            .map(|k| {
                                use base64::Engine as _;
                                print::string(&base64::engine::general_purpose::STANDARD.encode(k))
                            })
                            .collect();
                        format!("[{}]", items.join(","))
                    };
                    println!(
                        "{}",
                        header_of(&r.header)
                            .raw("id", &r.id.to_string())
                            .raw("ttl", &r.ttl.to_string())
                            .raw("granted-ttl", &r.granted_ttl.to_string())
                            .raw("keys", &keys_json)
                            .finish()
                    );
                }
                other => return Err(unsupported(other)),
            }
        }
        LeaseCommand::List => {
            let r = client
                .call(
                    |c, r| async move { lease(c).lease_leases(r).await },
                    LeaseLeasesRequest {},
                )
                .await?;
            match g.write_out {
                Format::Simple => {
                    println!("found {} leases", r.leases.len());
                    for l in &r.leases {
                        println!("{:016x}", l.id);
                    }
                }
                Format::Json => {
                    let items: Vec<String> = r
                        .leases
                        .iter()
                        .map(|l| Obj::new().raw("id", &l.id.to_string()).finish())
                        .collect();
                    let leases = format!("[{}]", items.join(","));
                    println!("{}", header_of(&r.header).raw("leases", &leases).finish());
                }
                other => return Err(unsupported(other)),
            }
        }
        LeaseCommand::KeepAlive { args, once } => {
            let text = args.first().ok_or_else(|| {
                CtlError::bad_args("lease keep-alive command needs lease ID as argument")
            })?;
            let id = lease_id(text)?;
            keep_alive(g, &client, id, once).await?;
        }
    }
    Ok(())
}

/// Sends a keep-alive every third of the TTL until the lease is gone (or once).
async fn keep_alive(g: &Global, client: &Client, id: i64, once: bool) -> Result<(), CtlError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(1);
    // The first request goes out with the call: a server may hold its response headers until
    // it has read one.
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| CtlError::general("the keep-alive stream closed"))?;
    let outbound = oxetcd::grpc::stream::ChannelStream::new(rx);
    let mut lease_client = LeaseClient::new(client.channel.clone());
    let call = lease_client.lease_keep_alive(client.request(outbound));
    let opened = tokio::time::timeout(g.command_timeout, call)
        .await
        .map_err(|_| CtlError::general("context deadline exceeded"))?;
    let mut responses = match opened {
        Ok(stream) => stream.into_inner(),
        Err(status) => return Err(client.status_error(&status).await),
    };
    let mut first = true;
    loop {
        if !first && tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return Err(CtlError::general("the keep-alive stream closed"));
        }
        first = false;
        let response = tokio::time::timeout(g.command_timeout, responses.message())
            .await
            .map_err(|_| CtlError::general("context deadline exceeded"))?
            .map_err(|s| CtlError::from_status(&s))?;
        let Some(r) = response else {
            return Err(CtlError::general("the keep-alive stream closed"));
        };
        if r.ttl <= 0 {
            println!("lease {id:016x} expired or revoked.");
            return Ok(());
        }
        match g.write_out {
            Format::Simple => println!("lease {:016x} keepalived with TTL({})", r.id, r.ttl),
            Format::Json => println!(
                "{}",
                header_of(&r.header)
                    .raw("ID", &r.id.to_string())
                    .raw("TTL", &r.ttl.to_string())
                    .finish()
            ),
            other => return Err(unsupported(other)),
        }
        if once {
            return Ok(());
        }
        let pause = u64::try_from(r.ttl / 3).unwrap_or(1).max(1);
        tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
    }
}
