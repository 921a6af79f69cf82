//! The repair of a node's damaged *metadata* replica (issue 15, CHECKLISTS R8 d, F-S3): a node
//! whose metadata group does not open (both copies of its hard or conf state damaged, a log
//! that fails its checks) starts quarantined: it serves no client, hosts the partition replicas
//! it has files for without leading them, and answers the metadata group's suspect queries from
//! its damaged files (`Node::host_groups_on_disk`). Before, it stayed so for good. Now it is
//! rebuilt as a damaged partition replica is (`crate::repair`), under a new identity:
//!
//! 1. **Reported.** The quarantined node cannot read the metadata, so it sends its repair
//!    steps through any peer (its `--node` list, in turn; the peer forwards to the controller):
//!    [`RepairStep::Reported`], recorded under `METADATA_GROUP` (`meta::repair`, phase
//!    `waiting`).
//! 2. **Ready.** It asks [`RepairStep::Ready`] every [`ASK_INTERVAL_TICKS`]; the controller
//!    (the metadata leader) records it only once every other metadata voter's match index is at
//!    least its commit index (`request::reassign`): every committed metadata entry is then on
//!    each voter but this one, so the damaged files hold nothing the group still needs. Until
//!    then the node keeps them and answers suspect queries from them, as before.
//! 3. **Rebuilding.** Recorded, the node writes [`REBUILD_FILE`] (durably), moves the damaged
//!    files aside (consensus `Node::set_aside_group`: under `<data_dir>/quarantine/0.<n>/`, kept
//!    for forensics), creates the metadata group empty and **suspect of its whole log**
//!    (`create_group_joining`: no vote, no pre-vote, no campaign until every other voter has
//!    answered its query and its log is durable up to the largest answer), and stops being
//!    passive: it binds its client listeners and runs the controller loop as any node that
//!    starts, which waits for the metadata to catch up before serving from it.
//! 4. **Done.** Once the rebuilt replica settled ([`finish`]), the node reports it repaired
//!    (`Event::Repaired`, [`RepairStep::Done`], counted as any repair) and removes
//!    [`REBUILD_FILE`].
//!
//! A crash anywhere is safe: before the set-aside the files still do not open and the steps
//! repeat (a repeated step is accepted and changes nothing); with [`REBUILD_FILE`] present,
//! the next start first completes an interrupted set-aside (a quarantine directory without its
//! marker) and creates the metadata group the same way, suspect while its log is empty
//! ([`rebuild_pending`], `server::open_metadata`), so a replica that crashed before saving its
//! suspicion cannot come back as a new one that votes.
//!
//! The controller's quorum arithmetic does not change: the damaged replica is out of the votes
//! already (it does not open), and the rebuilt one stays out of them until it caught up, as a
//! wiped node's (DESIGN.md "Repair of a damaged replica", "Node identity and rejoining").
//!
//! Cost: nothing on a node whose metadata opens but one directory listing at start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body};
use odradek_consensus::NodeId;
use odradek_log::{Disk, OpenMode};

use crate::context::NodeContext;
use crate::meta::{RepairStep, METADATA_GROUP};
use crate::shutdown::Shutdown;

/// Present from the moment a node starts rebuilding its metadata replica until the rebuilt
/// replica settled and the repair is recorded done (module documentation).
pub const REBUILD_FILE: &str = "odradek.metadata-rebuild";

/// Ticks between two questions of a quarantined node (and between two checks of whether the
/// rebuilt replica settled).
pub const ASK_INTERVAL_TICKS: u64 = 20;

/// Ticks one question may take (it is forwarded to the controller, which may propose).
const ANSWER_WAIT_TICKS: u64 = 40;

/// Whether a rebuild of the metadata replica was under way when the node stopped (module
/// documentation): [`REBUILD_FILE`] is in `data_dir`.
pub async fn rebuild_pending<D: Disk>(disk: &D, data_dir: &Path) -> std::io::Result<bool> {
    match disk.list_dir(data_dir).await {
        Ok(files) => Ok(files.iter().any(|file| file == REBUILD_FILE)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// On a quarantined node: reports the damaged metadata replica, waits until the controller
/// says it may be rebuilt, then rebuilds it (module documentation, steps 1 to 3). Returns
/// `true` once the node runs its metadata group again (the caller starts serving and runs
/// [`finish`]), `false` when the node is stopping.
pub async fn repair<D: Disk>(context: &Arc<NodeContext>, disk: &D, shutdown: &mut Shutdown) -> bool {
    let interval = Duration::from_millis(context.config.tick_ms * ASK_INTERVAL_TICKS);
    let mut turn = 0usize;
    let mut ready = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return false,
            _ = tokio::time::sleep(interval) => {}
        }
        turn += 1;
        if !ready {
            if ask(context, RepairStep::Reported, turn).await.is_err() {
                continue;
            }
            match ask(context, RepairStep::Ready, turn).await {
                Ok(()) => ready = true,
                Err(_) => continue,
            }
        }
        match rebuild(context, disk).await {
            Ok(()) => return true,
            Err(error) => tracing::warn!(%error, "rebuilding the damaged metadata replica failed; the next pass tries again"),
        }
    }
}

/// Step 3: marker, set-aside, an empty suspect metadata replica, no longer passive.
async fn rebuild<D: Disk>(context: &NodeContext, disk: &D) -> Result<(), String> {
    let dir = &context.config.data_dir;
    disk.open(&dir.join(REBUILD_FILE), OpenMode::CreateOrOpen).await.map_err(|error| format!("{REBUILD_FILE}: {error}"))?;
    disk.sync_dir(dir).await.map_err(|error| format!("{}: {error}", dir.display()))?;
    let moved = context.node.set_aside_group(METADATA_GROUP, false).await.map_err(|error| error.to_string())?;
    tracing::warn!(?moved, "rebuilding the damaged metadata replica: its files are set aside");
    match create_rebuilt(context).await {
        Ok(()) | Err(odradek_consensus::NodeError::GroupExists(_)) => {}
        Err(error) => return Err(error.to_string()),
    }
    context.node.end_passive().await.map_err(|error| error.to_string())?;
    context.metrics.set_quarantined(false);
    context.state.set_metadata_rebuilding(true);
    tracing::warn!("the metadata replica is rebuilt empty, out of the votes until it has caught up; serving clients again");
    Ok(())
}

/// Creates the metadata group empty on this node: suspect of its whole log (R8 d), or, with the
/// planted `metadata-repair-done-before-caught-up`, as a new replica that votes at once.
pub async fn create_rebuilt(context: &NodeContext) -> Result<(), odradek_consensus::NodeError> {
    let (voters, log_config) = (context.config.metadata_voters_initial(), context.config.metadata_log_config());
    if context.planted.metadata_repair_done_before_caught_up {
        return context.node.create_group_with(METADATA_GROUP, voters, 0, log_config).await;
    }
    context.node.create_group_joining(METADATA_GROUP, voters, log_config).await
}

/// Step 4, on a node that rebuilt its metadata replica (now or before a restart, when
/// [`REBUILD_FILE`] was found): once the replica's suspicion settled, reports the repair done
/// (every pass until the controller recorded it) and removes the marker.
pub async fn finish<D: Disk>(context: Arc<NodeContext>, disk: D, mut shutdown: Shutdown) {
    let me = context.state.node_id;
    let interval = Duration::from_millis(context.config.tick_ms * ASK_INTERVAL_TICKS);
    let done_early = context.planted.metadata_repair_done_before_caught_up;
    let mut reported = false;
    let mut turn = 0usize;
    loop {
        if !done_early {
            tokio::select! {
                biased;
                _ = shutdown.stopping() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        turn += 1;
        // (Planted `metadata-repair-done-before-caught-up`: done as soon as the replica opened.)
        if !done_early {
            match context.node.status(METADATA_GROUP).await {
                Ok(Some((status, _))) if !status.suspect => {}
                Ok(_) => continue,
                Err(_) => return, // the node is stopping
            }
        }
        if !reported {
            reported = true;
            odradek_consensus::observe::emit(|| odradek_consensus::observe::Event::Repaired { node: me, group: METADATA_GROUP });
            tracing::warn!("the rebuilt metadata replica has caught up and votes: repaired");
            context.state.set_metadata_rebuilding(false);
        }
        if ask(&context, RepairStep::Done, turn).await.is_err() {
            if done_early {
                tokio::select! {
                    biased;
                    _ = shutdown.stopping() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            continue;
        }
        let dir = &context.config.data_dir;
        let removed = match disk.remove_file(&dir.join(REBUILD_FILE)).await {
            Ok(()) => disk.sync_dir(dir).await,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        };
        match removed {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "removing the metadata rebuild marker failed; will retry"),
        }
    }
}

/// Sends a step of this node's metadata repair to the controller through a peer: the members
/// this node knows (its `--node` list, and its metadata's brokers once it has any), starting at
/// a different one each `turn`; the first answer that is not "no controller reachable" counts.
/// `Ok` once the controller recorded the step (or had already).
async fn ask(context: &NodeContext, step: RepairStep, turn: usize) -> Result<(), String> {
    let me = context.state.node_id;
    let peers: Vec<NodeId> = {
        let known: std::collections::BTreeSet<NodeId> = context
            .config
            .nodes
            .iter()
            .map(|member| member.id)
            .chain(context.state.lock().meta.brokers().keys().copied())
            .filter(|&node| node != me)
            .collect();
        known.into_iter().collect()
    };
    if peers.is_empty() {
        return Err("no peer to ask".to_string());
    }
    let wait = Duration::from_millis(context.config.tick_ms * ANSWER_WAIT_TICKS);
    let mut last = String::new();
    for k in 0..peers.len() {
        let to = peers[(turn + k) % peers.len()];
        let mut request = wire::ReassignPartitionRequest::new();
        request.repair_metadata = true;
        request.repair_node = me;
        request.repair_step = step.code();
        let body = Body::reassign_partition(request);
        let response = match tokio::time::timeout(wait, crate::request::relay::call(context, to, "metadata-repair", body)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                last = format!("node {to}: {error}");
                continue;
            }
            Err(_) => {
                last = format!("node {to} did not answer in time");
                continue;
            }
        };
        match response.error {
            ErrorCode::NONE => {
                tracing::info!(?step, via = to, "metadata repair step recorded");
                return Ok(());
            }
            // No controller reachable from that peer (or it is catching up): try another.
            ErrorCode::NOT_CONTROLLER | ErrorCode::REQUEST_TIMED_OUT | ErrorCode::LEADERSHIP_LOST | ErrorCode::SHUTTING_DOWN => {
                last = format!("node {to}: {:?}: {}", response.error, response.error_message);
            }
            ErrorCode::LEADER_NOT_AVAILABLE if response.error_message.contains("catching up") => {
                last = format!("node {to}: {}", response.error_message);
            }
            error => {
                tracing::info!(?step, via = to, ?error, message = %response.error_message, "metadata repair step not recorded (yet)");
                return Err(response.error_message);
            }
        }
    }
    tracing::info!(?step, %last, "no controller reachable for the metadata repair; will retry");
    Err(last)
}
