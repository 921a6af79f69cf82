//! The same driver as one `Node::run` task per node, reached only through `NodeHandle`s: over
//! `LocalNetwork` on real tokio time, and over TCP on loopback with real files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use odradek_consensus::observe;
use odradek_consensus::{EntryMeta, LocalNetwork, Node, NodeConfig, NodeId};
use odradek_log::SimDisk;
use raft::StateRole;

use crate::harness::{observe_raft, Recorded, Recorder};

/// The same driver as a task per node (`Node::run`), reached only through `NodeHandle`s, on
/// real tokio time; a pump task plays the network.
#[tokio::test]
async fn node_tasks_elect_and_commit_through_handles() {
    use std::time::Duration;
    let network = LocalNetwork::new();
    // Every node task runs on this thread (a current-thread runtime): the checker sees them all.
    let raft = observe_raft();
    let recorded: Arc<Mutex<Recorded>> = Arc::default();
    let mut handles = BTreeMap::new();
    let mut tasks = Vec::new();
    for id in 1..=3 {
        let (transport, inbox) = network.attach(id);
        let recorder = Recorder { node: id, recorded: recorded.clone() };
        let node = Node::new(NodeConfig::new(id, "/data"), SimDisk::new(id), transport, inbox, recorder);
        let (handle, commands) = odradek_consensus::NodeHandle::new();
        tasks.push(tokio::spawn(node.run(commands, Duration::from_millis(5), || 0)));
        handle.create_group(1, vec![1, 2, 3], 0).await.unwrap();
        handles.insert(id, handle);
    }
    let pump = {
        let network = network.clone();
        tokio::spawn(async move {
            loop {
                network.deliver_all();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut committed = Vec::new();
    for attempt in 0..500 {
        let mut leader = None;
        for (&id, handle) in &handles {
            let (status, conf) = handle.status(1).await.unwrap().unwrap();
            assert_eq!(conf.voters.len(), 3);
            if status.role == StateRole::Leader {
                leader = Some(id);
            }
        }
        if let Some(leader) = leader {
            let payload = Bytes::from(format!("via handle #{attempt}"));
            if let Ok(outcome) = handles[&leader].propose(1, payload, EntryMeta::Command).await {
                committed.push(outcome);
                if committed.len() == 5 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(committed.len(), 5, "handles committed only {committed:?}");
    assert!(handles[&1].stats().await.unwrap().rounds > 0);
    // Leadership may have moved under real time; any resolution is of this group.
    for handle in handles.values() {
        assert!(handle.take_resolved_outcomes().await.unwrap().iter().all(|r| r.group == 1));
    }
    drop(handles);
    for task in tasks {
        task.await.unwrap().expect("the loop ends cleanly when its handles are dropped");
    }
    pump.abort();
    observe::uninstall();
    assert!(raft.borrow().violations().is_empty() && raft.borrow().events > 0);
}

/// The same driver over real TCP on loopback with real files (`FsDisk` in a temp dir), each
/// node a `Node::run` task reached through its handle.
#[tokio::test]
async fn three_nodes_over_tcp_with_real_files_commit_through_handles() {
    use odradek_consensus::TcpTransport;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: BTreeMap<NodeId, std::net::SocketAddr> = listeners.iter().map(|(&id, l)| (id, l.local_addr().unwrap())).collect();
    let raft = observe_raft();
    let recorded: Arc<Mutex<Recorded>> = Arc::default();
    let mut handles = BTreeMap::new();
    let mut tasks = Vec::new();
    for (id, listener) in listeners {
        let peers = addrs.iter().filter(|(&peer, _)| peer != id).map(|(&peer, &addr)| (peer, addr)).collect();
        let (transport, inbox) = TcpTransport::start(id, listener, peers).unwrap();
        let recorder = Recorder { node: id, recorded: recorded.clone() };
        let config = NodeConfig::new(id, dir.path().join(format!("node-{id}")));
        let node = Node::new(config, odradek_log::FsDisk::new(), transport, inbox, recorder);
        let (handle, commands) = odradek_consensus::NodeHandle::new();
        tasks.push(tokio::spawn(node.run(commands, Duration::from_millis(10), || 0)));
        handle.create_group(0, vec![1, 2, 3], 0).await.unwrap();
        handles.insert(id, handle);
    }
    let mut committed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while committed.len() < 5 && tokio::time::Instant::now() < deadline {
        for handle in handles.values() {
            let (status, _) = handle.status(0).await.unwrap().unwrap();
            if status.role == StateRole::Leader {
                let meta = EntryMeta::Data { record_count: 1, max_timestamp: 0 };
                if let Ok(outcome) = handle.propose(0, Bytes::from(format!("tcp #{}", committed.len())), meta).await {
                    committed.push(outcome);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(committed.len(), 5, "committed only {committed:?}");
    let last = committed.last().unwrap().index;
    while tokio::time::Instant::now() < deadline {
        let applied: Vec<u64> = (1..=3).map(|id| recorded.lock().unwrap().applied.get(&(id, 0)).copied().unwrap_or(0)).collect();
        if applied.iter().all(|&index| index >= last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in 1..=3 {
        let applied = recorded.lock().unwrap().applied.get(&(id, 0)).copied().unwrap_or(0);
        assert!(applied >= last, "node {id} applied {applied} < {last}");
    }
    drop(handles);
    for task in tasks {
        task.await.unwrap().expect("clean stop");
    }
    observe::uninstall();
    assert!(raft.borrow().violations().is_empty() && raft.borrow().events > 0);
}
