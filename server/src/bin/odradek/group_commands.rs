//! `odradek group list|describe|reset-offsets|delete` and `odradek consume --group`: consumer
//! groups from the command line, through the client crate's `Admin` and `Consumer::subscribe`.
//!
//! `consume --group` commits after each batch it printed (only what it printed: a stop in the
//! middle of a batch commits up to the last printed record), so a consumer that is stopped and
//! started again in the same group goes on where it left off (at least once: a batch printed
//! and not yet committed when the process dies is printed again by whoever owns the partition
//! next). Ctrl-C leaves the group at once (its partitions move without waiting for the session
//! timeout).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use odradek_client::group::admin::ResetTo;
use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClientError, Consumer, ConsumerConfig, OffsetQuery, OffsetReset};
use tokio::time::Instant;

use crate::client_commands::{explain, Bootstrap, ConsumeArgs, RecordFormat};
use crate::output::{note, say};

/// Without `--follow`: how long `consume --group` waits for the group to give it a partition.
pub const ASSIGNMENT_WAIT: Duration = Duration::from_secs(15);
/// How long one poll of `consume --group` waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List every consumer group, with its protocol, state and coordinator.
    List,
    /// A group's members and their partitions, and per partition the committed offset, the log
    /// end and the lag.
    Describe { group: String },
    /// Move a group's committed offsets for every partition of a topic (the group must have no
    /// members: stop its consumers first).
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets (the group must have no members).
    Delete { group: String },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
pub struct ResetOffsetsArgs {
    group: String,
    /// The topic whose partitions' offsets move.
    #[arg(long, short = 't')]
    topic: String,
    /// Each partition's first offset still in the log.
    #[arg(long)]
    to_earliest: bool,
    /// Each partition's end: only records written from now on are consumed.
    #[arg(long)]
    to_latest: bool,
    /// This offset on every partition.
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
}

/// How long a group command retries while the group's coordinator is moving or loading.
const COORDINATOR_WAIT: Duration = Duration::from_secs(15);

/// Runs `operation` again while it fails with a retriable error (the coordinator moved, is
/// loading, or is being elected: the per-group errors of DescribeGroups and DeleteGroups come
/// back as they are), for at most [`COORDINATOR_WAIT`].
async fn retrying<T, F: std::future::Future<Output = Result<T, ClientError>>>(mut operation: impl FnMut() -> F) -> Result<T, ClientError> {
    let deadline = Instant::now() + COORDINATOR_WAIT;
    loop {
        match operation().await {
            Err(error) if error.is_retriable() && error.is_definite() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The error of a group operation, said in terms of what to do about it.
fn group_error(group: &str, error: ClientError) -> String {
    match error.code() {
        Some(ErrorCode::GROUP_ID_NOT_FOUND) => {
            format!("group {group:?} does not exist (`odradek group list` shows the groups)")
        }
        Some(ErrorCode::NON_EMPTY_GROUP) => format!(
            "group {group:?} still has members: stop its consumers (or wait for their session timeout) and retry; \
             `odradek group describe {group}` lists them"
        ),
        _ => explain(error),
    }
}

pub async fn group(bootstrap: &Bootstrap, command: GroupCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    match command {
        GroupCommand::List => list(&admin).await,
        GroupCommand::Describe { group } => describe(&admin, &group).await,
        GroupCommand::ResetOffsets(args) => {
            let to = match (args.to_earliest, args.to_latest, args.to_offset) {
                (true, _, _) => ResetTo::Earliest,
                (_, true, _) => ResetTo::Latest,
                (_, _, Some(offset)) => ResetTo::Offset(offset),
                _ => unreachable!("clap requires one of --to-earliest, --to-latest, --to-offset"),
            };
            admin.describe_topic(&args.topic).await.map_err(explain)?;
            let offsets =
                retrying(|| admin.reset_group_offsets(&args.group, &args.topic, to)).await.map_err(|e| group_error(&args.group, e))?;
            say!("Reset the committed offsets of group {:?} for topic {:?}:", args.group, args.topic);
            say!("{:>9}  {:>10}", "partition", "committed");
            for ((_, partition), offset) in offsets {
                say!("{partition:>9}  {offset:>10}");
            }
            Ok(())
        }
        GroupCommand::Delete { group } => {
            retrying(|| admin.delete_group(&group)).await.map_err(|e| group_error(&group, e))?;
            say!("Deleted group {group:?} and its committed offsets.");
            Ok(())
        }
    }
}

async fn list(admin: &Admin) -> Result<(), String> {
    let listing = admin.list_groups().await.map_err(explain)?;
    for (node, error) in &listing.unreachable {
        note!("odradek: node {node} did not answer ({error}); the groups it coordinates are missing below");
    }
    if listing.groups.is_empty() {
        say!("(no groups)");
        return Ok(());
    }
    say!("{:<32} {:<9} {:<20} {:>11}", "group", "protocol", "state", "coordinator");
    for group in &listing.groups {
        say!("{:<32} {:<9} {:<20} {:>11}", group.group, group.kind, group.state, group.coordinator);
    }
    Ok(())
}

async fn describe(admin: &Admin, group: &str) -> Result<(), String> {
    let described = retrying(|| admin.describe_group(group)).await.map_err(|e| group_error(group, e))?;
    // A group without members speaks no protocol until the next one joins.
    let kind = if described.kind.is_empty() { "no members".to_string() } else { format!("{} protocol", described.kind) };
    let epoch_name = if described.kind == "classic" { "generation" } else { "group epoch" };
    let assignor = if described.protocol_name.is_empty() { String::new() } else { format!(", assignor {}", described.protocol_name) };
    say!(
        "Group {:?}: {kind}, state {}, {epoch_name} {}, coordinator node {}{assignor}",
        described.group,
        described.state,
        described.epoch,
        described.coordinator
    );
    let mut owner: BTreeMap<(String, u32), &str> = BTreeMap::new();
    let mut topics: BTreeSet<String> = described.offsets.keys().map(|(topic, _)| topic.clone()).collect();
    say!("");
    if described.members.is_empty() {
        say!("Members: none");
    } else {
        say!("Members ({}):", described.members.len());
        say!("  {:<40} {:<16} {:<24} {:>6}  partitions", "member", "instance", "client", "epoch");
        for member in &described.members {
            let partitions: Vec<String> = member.assignment.iter().map(|(topic, partition)| format!("{topic}/{partition}")).collect();
            say!(
                "  {:<40} {:<16} {:<24} {:>6}  {}",
                member.member_id,
                member.group_instance_id.as_deref().unwrap_or("-"),
                member.client_id,
                member.epoch,
                if partitions.is_empty() { "-".to_string() } else { partitions.join(",") }
            );
            if let Some(regex) = &member.subscribed_regex {
                say!("  {:<40} subscribed to topics matching {regex:?}", "");
            }
            for partition in &member.assignment {
                owner.insert(partition.clone(), &member.member_id);
            }
            topics.extend(member.assignment.iter().map(|(topic, _)| topic.clone()));
            topics.extend(member.subscribed_topics.iter().cloned());
        }
    }
    say!("");
    say!("{:<24} {:>9} {:>10} {:>10} {:>8}  member", "topic", "partition", "committed", "log end", "lag");
    let mut rows = 0;
    for topic in &topics {
        // Every partition of the topic (a topic deleted since: only those with a commit).
        let partitions: BTreeSet<u32> = match admin.describe_topic(topic).await {
            Ok(info) => info.partitions.iter().map(|p| p.partition).collect(),
            Err(_) => described.offsets.keys().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect(),
        };
        for partition in partitions {
            let key = (topic.clone(), partition);
            let committed = described.offsets.get(&key).copied();
            let end = admin.list_offsets(topic, partition, OffsetQuery::Latest).await.ok().map(|listed| listed.offset);
            let lag = match (committed, end) {
                (Some(committed), Some(end)) => end.saturating_sub(committed).to_string(),
                _ => "-".to_string(),
            };
            let show = |value: Option<u64>| value.map_or("-".to_string(), |v| v.to_string());
            say!(
                "{topic:<24} {partition:>9} {:>10} {:>10} {lag:>8}  {}",
                show(committed),
                show(end),
                owner.get(&key).copied().unwrap_or("-")
            );
            rows += 1;
        }
    }
    if rows == 0 {
        say!("(no partitions: nothing committed, nothing subscribed)");
    }
    Ok(())
}

/// `odradek consume --group G`: joins the group subscribed to the topic, prints what the group
/// gives this member, and commits after each batch printed.
pub async fn consume_in_group(bootstrap: &Bootstrap, args: ConsumeArgs) -> Result<(), String> {
    let group = args.group.clone().expect("called with --group");
    let addresses = bootstrap.addresses();
    let admin = bootstrap.admin()?;
    let topic = admin.describe_topic(&args.topic).await.map_err(explain)?;
    // Without --follow: stop once this member's partitions reach their ends as of now.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    if !args.follow {
        for partition in &topic.partitions {
            let end = admin.list_offsets(&args.topic, partition.partition, OffsetQuery::Latest).await.map_err(explain)?;
            ends.insert(partition.partition, end.offset);
        }
    }
    let config = ConsumerConfig {
        group_id: Some(group.clone()),
        group_instance_id: args.group_instance_id.clone(),
        group_protocol: args.group_protocol.to_protocol(),
        // Commits are explicit, after printing: what is committed was printed.
        enable_auto_commit: false,
        group_offset_reset: if args.from_end { OffsetReset::Latest } else { OffsetReset::Earliest },
        cluster: bootstrap.cluster_config()?,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&addresses, config).map_err(explain)?;
    consumer.subscribe([args.topic.clone()]).map_err(explain)?;
    let format = RecordFormat::of(&args);
    let assignment_deadline = Instant::now() + ASSIGNMENT_WAIT;
    let mut printed = 0u64;
    let mut stopped_early = false;
    let outcome: Result<(), String> = async {
        loop {
            if !args.follow {
                let assigned = consumer.assignment();
                let caught_up = |(topic, partition): &(String, u32)| {
                    consumer.position(topic, *partition).is_some_and(|position| position >= ends.get(partition).copied().unwrap_or(0))
                };
                if !assigned.is_empty() && assigned.iter().all(caught_up) {
                    return Ok(());
                }
                if assigned.is_empty() && Instant::now() >= assignment_deadline {
                    note!("odradek: group {group:?} gave this member no partition within {} s", ASSIGNMENT_WAIT.as_secs());
                    return Ok(());
                }
            }
            let records = tokio::select! {
                records = consumer.poll(POLL_TIMEOUT) => records.map_err(explain)?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            // The next offset of each partition printed from: what to commit.
            let mut done: BTreeMap<(String, u32), u64> = BTreeMap::new();
            {
                for record in &records {
                    if !say!("{}", format.line(record)) {
                        stopped_early = true; // stdout closed: commit what was printed, then leave.
                        break;
                    }
                    done.insert((record.topic.clone(), record.partition), record.offset + 1);
                    printed += 1;
                    if args.max_records.is_some_and(|max| printed >= max) {
                        stopped_early = true;
                        break;
                    }
                }
            }
            if !done.is_empty() {
                // A commit refused in a rebalance is not fatal: the records go to the next
                // owner again (at least once).
                if let Err(error) = consumer.commit_offsets(done).await {
                    note!("odradek: commit failed, the next owner of these partitions reads them again: {}", explain(error));
                }
            }
            if stopped_early {
                return Ok(());
            }
        }
    }
    .await;
    let closed = consumer.close().await;
    outcome?;
    closed.map_err(explain)?;
    note!("Consumed {printed} records as a member of group {group:?}.");
    Ok(())
}
