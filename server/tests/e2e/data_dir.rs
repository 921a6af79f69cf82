//! Data-directory mistakes an operator makes, against the real `odradek server`: a second
//! process on a directory in use, a node started on another node's directory. Each is refused
//! at start with a message that says what is wrong, and the node that owns the directory keeps
//! serving.

// Real processes, real files and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::process::{Command, Output};

use odradek_client::wire::proto::ErrorCode;
use odradek_jepsen::harness::ports::reserve;

use common::raw::{call_until, metadata, Raw};
use common::ProcessCluster;

const BIN: &str = env!("CARGO_BIN_EXE_odradek");

/// Seconds a refused server may take to exit; one still running then is stopped by `timeout`
/// (exit 124), and the test fails on its status.
const REFUSAL_SECONDS_MAX: &str = "30";

/// `odradek server` as node `id` alone in its cluster, on `data_dir`, on fresh ports.
fn run_server(id: u64, data_dir: &std::path::Path) -> Output {
    let port_block = reserve(2).expect("two free ports");
    let node = format!("{id}=127.0.0.1:{}/127.0.0.1:{}", port_block.ports()[0], port_block.ports()[1]);
    Command::new("timeout")
        .arg(REFUSAL_SECONDS_MAX)
        .arg(BIN)
        .args(["server", "--id", &id.to_string(), "--data-dir", data_dir.to_str().unwrap(), "--tick-ms", "20", "--node", &node])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run odradek server")
}

fn serving(cluster: &ProcessCluster) {
    let mut raw = Raw::greeted(&cluster.client_addr(1));
    let response = call_until(&mut raw, &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
}

#[test]
fn a_second_process_on_a_data_directory_in_use_is_refused() {
    let mut cluster = ProcessCluster::start(1);
    serving(&cluster);
    let data_dir = cluster.nodes[0].data_dir.clone();
    let refused = run_server(1, &data_dir);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a second server on {} ran: {}\n{stderr}", data_dir.display(), refused.status);
    assert_eq!(refused.status.code(), Some(1), "refused at start, not stopped by timeout: {stderr}");
    assert!(stderr.contains("in use by another odradek process") && stderr.contains(data_dir.to_str().unwrap()), "{stderr}");
    serving(&cluster);
    assert!(cluster.is_running(1));

    // The lock goes with the process, however it ends: a restart after SIGKILL takes it.
    cluster.kill(1);
    cluster.restart(1);
    serving(&cluster);
}

#[test]
fn a_node_started_on_another_nodes_data_directory_is_refused() {
    let mut cluster = ProcessCluster::start(1);
    serving(&cluster);
    let data_dir = cluster.nodes[0].data_dir.clone();
    let status = cluster.terminate(1);
    assert!(status.success());
    let refused = run_server(2, &data_dir);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "node 2 on node 1's directory: {}\n{stderr}", refused.status);
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
    // Its owner still starts on it.
    cluster.restart(1);
    serving(&cluster);
}
