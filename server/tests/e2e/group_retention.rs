//! Bounded storage of the offsets topic: a long stream of offset commits on small segments makes
//! the coordinator snapshot its group table and retention delete every segment wholly below the
//! latest snapshot, and yet every group's latest commits survive — on a newly elected
//! coordinator, on a replica that was down while its missing entries were deleted (it catches up
//! by a raft snapshot: a new log start, its table rebuilt from the snapshot record that follows),
//! and on a restarted coordinator that replays its trimmed log. Three in-process nodes on
//! loopback over real files.

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClientError, TopicConfig};
use odradek_consensus::GroupId;
use odradek_jepsen::harness::ports::reserve;
use odradek_log::FsDisk;
use odradek_server::config::{Member, ServerConfig};
use odradek_server::group::OFFSETS_TOPIC;
use odradek_server::{system_clock, Server};
use raft::StateRole;

const GROUPS: u32 = 8;
const PARTITIONS: u32 = 4;
/// Committed offsets: (group, topic, partition) → offset.
type Offsets = BTreeMap<(String, String, u32), u64>;

fn configs(dir: &std::path::Path, ports: &[u16]) -> Vec<ServerConfig> {
    let members: Vec<Member> = (0..3)
        .map(|i| Member {
            id: i + 1,
            peer: ([127, 0, 0, 1], ports[2 * i as usize]).into(),
            client: ([127, 0, 0, 1], ports[2 * i as usize + 1]).into(),
            kafka: None,
        })
        .collect();
    members
        .iter()
        .map(|member| {
            let data_dir = dir.join(format!("node-{}", member.id));
            std::fs::create_dir_all(&data_dir).unwrap();
            let mut config = ServerConfig::new(member.id, data_dir, members.clone());
            config.tick_ms = 20;
            config.balance_interval_ms = 100;
            config.groups.offsets_topic_partitions = 1;
            config.groups.timer_tick_ms = 20;
            config.groups.snapshot_bytes_min = 2 * 1024;
            config.groups.offsets_segment_bytes = 4 * 1024;
            config
        })
        .collect()
}

async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The offsets partition's raft group and its preferred replica.
fn offsets_partition(server: &Server) -> Option<(GroupId, u64)> {
    let state = server.state().lock();
    let partition = state.meta.topic(OFFSETS_TOPIC)?.partitions.first()?.clone();
    Some((partition.group, partition.replicas[0]))
}

/// What `server`'s group table holds (every replica applies the same records).
fn table_offsets(server: &Server, raft_group: GroupId) -> Offsets {
    let state = server.state().lock();
    let Some(partition) = state.coordinators.get(&raft_group) else { return Offsets::new() };
    let mut offsets = Offsets::new();
    for (id, group) in partition.table.groups() {
        for ((topic, partition), committed) in &group.offsets {
            offsets.insert((id.clone(), topic.clone(), *partition), committed.offset as u64);
        }
    }
    offsets
}

/// Starts a node again on the ports it had. The stopped node's listener tasks release their
/// sockets shortly after `shutdown` returns, so a bind can still find its port taken: retried
/// while it is (at most 50 times, 100 ms apart); any other error fails the test.
async fn restart(config: &ServerConfig) -> Server {
    for _ in 0..50 {
        match Server::start(config.clone(), FsDisk::new(), system_clock()).await {
            Ok(server) => return server,
            Err(error) if format!("{error:?}").contains("AddrInUse") => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => panic!("restart: {error:?}"),
        }
    }
    panic!("restart: its ports stayed taken for 5 s");
}

/// The first index of `raft_group`'s log on `server`, or 0 while the server does not host it
/// yet: a replica may create the group after two others acknowledged hundreds of commits
/// (seen once in CI: "hosted" failed inside the wait for the segments' deletion).
async fn first_index(server: &Server, raft_group: GroupId) -> u64 {
    server.node().log_bounds(raft_group).await.unwrap().map_or(0, |bounds| bounds.first_index)
}

async fn is_leader(server: &Server, raft_group: GroupId) -> bool {
    matches!(server.node().status(raft_group).await, Ok(Some((status, _))) if status.role == StateRole::Leader)
}

/// Commits `offset` for one (group, partition), retrying an outcome that may be unknown (the
/// same offset again is harmless), and records it.
async fn commit(admin: &Admin, expected: &mut Offsets, offset: u64) {
    let group = format!("g{}", offset % u64::from(GROUPS));
    let partition = (offset / u64::from(GROUPS)) as u32 % PARTITIONS;
    let offsets: BTreeMap<(String, u32), u64> = [(("t".to_string(), partition), offset)].into_iter().collect();
    let mut attempts = 0;
    while let Err(error) = admin.alter_group_offsets(&group, &offsets).await {
        attempts += 1;
        assert!(attempts < 50, "commit {offset} to {group}: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expected.insert((group, "t".to_string(), partition), offset);
}

/// Every group's committed offsets as its coordinator answers them.
async fn fetched(admin: &Admin) -> Offsets {
    let mut offsets = Offsets::new();
    for group in (0..GROUPS).map(|g| format!("g{g}")) {
        let committed = eventually("offset fetch", Duration::from_secs(20), async || admin.list_group_offsets(&group).await.ok()).await;
        for ((topic, partition), offset) in committed {
            offsets.insert((group.clone(), topic, partition), offset);
        }
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_the_offsets_topic_below_its_snapshots_and_every_latest_commit_survives() {
    let dir = tempfile::tempdir().unwrap();
    let port_block = reserve(6).expect("six free ports");
    let configs = configs(dir.path(), port_block.ports());
    let mut servers: Vec<Option<Server>> = Vec::new();
    for config in &configs {
        servers.push(Some(Server::start(config.clone(), FsDisk::new(), system_clock()).await.expect("start")));
    }
    let bootstrap: Vec<String> = servers.iter().map(|s| s.as_ref().unwrap().client_addr().to_string()).collect();
    let bootstrap: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&bootstrap).unwrap();
    eventually("topic t", Duration::from_secs(20), async || match admin.create_topic("t", PARTITIONS, 3, TopicConfig::default()).await {
        Ok(_) | Err(ClientError::Server { code: ErrorCode::TOPIC_ALREADY_EXISTS, .. }) => Some(()),
        Err(_) => None,
    })
    .await;

    // A first commit creates the offsets topic; then a stream of commits.
    let mut expected = Offsets::new();
    let mut offset = 0;
    commit(&admin, &mut expected, offset).await;
    let (raft_group, preferred) = offsets_partition(servers[0].as_ref().unwrap()).expect("the offsets topic exists");
    let x = preferred as usize - 1;
    while offset < 300 {
        offset += 1;
        commit(&admin, &mut expected, offset).await;
    }
    // Retention deleted segments on every replica, each below its own latest snapshot.
    for server in servers.iter().flatten() {
        eventually("segments deleted", Duration::from_secs(20), async || (first_index(server, raft_group).await > 1).then_some(())).await;
        let table = server.state().lock().coordinators[&raft_group].table.retention_bound();
        assert!(table > 0 && first_index(server, raft_group).await <= table, "a segment at or above the last snapshot went");
    }
    assert_eq!(fetched(&admin).await, expected);

    // The preferred replica (the coordinator, usually) stops; a new coordinator answers every
    // latest commit; commits go on until what the stopped one misses is deleted everywhere.
    let stopped = servers[x].take().unwrap();
    let stopped_last = stopped.node().status(raft_group).await.unwrap().unwrap().0.last_index;
    stopped.shutdown().await.unwrap();
    assert_eq!(fetched(&admin).await, expected, "a newly elected coordinator lost commits");
    for server in servers.iter().flatten() {
        while first_index(server, raft_group).await <= stopped_last + 1 {
            offset += 1;
            commit(&admin, &mut expected, offset).await;
            assert!(offset < 5_000, "retention never passed index {stopped_last}");
        }
    }

    // It comes back behind the log start: a raft snapshot, then the log from the new start
    // rebuilds its table; once caught up it leads again (the preferred replica) and answers.
    servers[x] = Some(restart(&configs[x]).await);
    let back = servers[x].as_ref().unwrap();
    eventually("the returning replica's table", Duration::from_secs(30), async || {
        (table_offsets(back, raft_group) == expected).then_some(())
    })
    .await;
    assert!(first_index(back, raft_group).await > stopped_last + 1, "it was not caught up by a snapshot");
    eventually("the preferred replica leads", Duration::from_secs(30), async || is_leader(back, raft_group).await.then_some(())).await;
    assert_eq!(fetched(&admin).await, expected, "a coordinator rebuilt from a snapshot catch-up lost commits");
    assert!(is_leader(back, raft_group).await);

    // Restarted with a trimmed log: the replay from its log start rebuilds the same table.
    offset += 1;
    commit(&admin, &mut expected, offset).await;
    let restarted = servers[x].take().unwrap();
    assert!(first_index(&restarted, raft_group).await > 1);
    restarted.shutdown().await.unwrap();
    servers[x] = Some(restart(&configs[x]).await);
    let back = servers[x].as_ref().unwrap();
    eventually("the restarted replica's table", Duration::from_secs(30), async || {
        (table_offsets(back, raft_group) == expected).then_some(())
    })
    .await;
    eventually("the preferred replica leads again", Duration::from_secs(30), async || is_leader(back, raft_group).await.then_some(()))
        .await;
    assert_eq!(fetched(&admin).await, expected, "a restarted coordinator lost commits");
    for server in servers.iter().flatten() {
        assert_eq!(table_offsets(server, raft_group), expected, "replicas hold equal tables");
    }
    for server in servers.into_iter().flatten() {
        server.shutdown().await.unwrap();
    }
}
