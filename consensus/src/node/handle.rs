//! Running a [`Node`] as one task: [`Node::run`] owns the node and waits for a tick, an inbound
//! batch or a command, then does one round; other tasks talk to it through a cloneable
//! [`NodeHandle`] over a bounded command queue.
//!
//! The loop never blocks on anything but its own round: commands are queued and taken in
//! batches of at most `COMMANDS_PER_ROUND_MAX` per round, inbound batches are stepped by the
//! round itself. Time comes from the caller's clock (milliseconds, used by the log for segment
//! age and retention) and from `tokio::time` for ticks, so the same loop runs under madsim.
//!
//! Shutdown: when every handle is dropped the loop returns; proposals still open resolve as
//! [`ProposeError::NodeStopped`] (indefinite). An error from a round (a storage fault) stops
//! the loop and is returned: the node must restart from what is durable.

use std::time::Duration;

use bytes::Bytes;
use odradek_log::{Disk, LogConfig, RetentionReport, StartState};
use raft::eraftpb::{ConfChangeV2, ConfState};
use tokio::sync::{mpsc, oneshot};

use super::{
    Appended, Apply, Durability, GroupStatus, LeadRefusals, LogBounds, Node, NodeError, NodeStats, Proposal, ProposeError, ResolvedOutcome,
};
use crate::observe::HandOverCause;
use crate::storage::EntryMeta;
use crate::transport::{GroupId, NodeId, Transport};

/// Capacity of a node's command queue; `NodeHandle` calls wait while it is full.
pub const COMMAND_QUEUE_MAX: usize = 4096;
/// Commands taken per round; the rest wait for the next round.
pub const COMMANDS_PER_ROUND_MAX: usize = 1024;

/// A request to the node task. Every command carries its reply channel.
#[derive(Debug)]
pub enum Command {
    Propose {
        group: GroupId,
        data: Bytes,
        meta: EntryMeta,
        durability: Durability,
        reply: oneshot::Sender<Proposal>,
    },
    ProposeConfChange {
        group: GroupId,
        change: ConfChangeV2,
        reply: oneshot::Sender<Proposal>,
    },
    CreateGroup {
        group: GroupId,
        voters: Vec<NodeId>,
        state_machine_applied: u64,
        /// `None`: the node's default (`NodeConfig::log_config`).
        log_config: Option<LogConfig>,
        /// See [`Node::create_group_joining`].
        joining: bool,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    RemoveGroup {
        group: GroupId,
        reply: oneshot::Sender<bool>,
    },
    TransferLeader {
        group: GroupId,
        to: NodeId,
        cause: HandOverCause,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    EnforceRetention {
        group: GroupId,
        index_bound_max: u64,
        start_state: Option<StartState>,
        reply: oneshot::Sender<Result<RetentionReport, NodeError>>,
    },
    Status {
        group: GroupId,
        reply: oneshot::Sender<Option<(GroupStatus, ConfState)>>,
    },
    Stats {
        reply: oneshot::Sender<NodeStats>,
    },
    /// See [`Node::leading`].
    Leading {
        reply: oneshot::Sender<std::collections::BTreeSet<GroupId>>,
    },
    /// See [`Node::retention_candidates`].
    RetentionCandidates {
        reply: oneshot::Sender<std::collections::BTreeSet<GroupId>>,
    },
    /// See [`Node::retention_overdue`].
    RetentionOverdue {
        group: GroupId,
        reply: oneshot::Sender<Result<usize, NodeError>>,
    },
    /// The node has finished joining (`NodeConfig::empty_logs_suspect` off from now on).
    EndJoining {
        reply: oneshot::Sender<()>,
    },
    /// The node runs its metadata group again (see [`Node::end_passive`]).
    EndPassive {
        reply: oneshot::Sender<()>,
    },
    SetLeadRefusals {
        refusals: LeadRefusals,
        reply: oneshot::Sender<()>,
    },
    Drain {
        reply: oneshot::Sender<usize>,
    },
    Campaign {
        group: GroupId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    DestroyGroup {
        group: GroupId,
        reply: oneshot::Sender<Result<bool, NodeError>>,
    },
    SetAsideGroup {
        group: GroupId,
        only_unfinished: bool,
        reply: oneshot::Sender<Result<Option<std::path::PathBuf>, NodeError>>,
    },
    DestroyStrayGroups {
        keep: std::collections::BTreeSet<GroupId>,
        reply: oneshot::Sender<Result<Vec<GroupId>, NodeError>>,
    },
    ReadRecords {
        group: GroupId,
        offset: u64,
        bytes_max: u64,
        index_max: u64,
        reply: oneshot::Sender<Result<Vec<odradek_log::Entry>, NodeError>>,
    },
    LogBounds {
        group: GroupId,
        reply: oneshot::Sender<Option<LogBounds>>,
    },
    TakeResolvedOutcomes {
        reply: oneshot::Sender<Vec<ResolvedOutcome>>,
    },
    ReadIndex {
        group: GroupId,
        reply: oneshot::Sender<Result<u64, NodeError>>,
    },
}

impl Command {
    /// A query or a log chore that leaves every group's raft state as it was: no round needs
    /// to follow it.
    fn changes_no_raft_state(&self) -> bool {
        matches!(
            self,
            Command::Status { .. }
                | Command::Stats { .. }
                | Command::Leading { .. }
                | Command::RetentionCandidates { .. }
                | Command::RetentionOverdue { .. }
                | Command::LogBounds { .. }
                | Command::TakeResolvedOutcomes { .. }
                | Command::ReadRecords { .. }
                | Command::EnforceRetention { .. }
        )
    }
}

/// A cloneable handle on a running node task.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    /// The driver's log readers: with them, [`NodeHandle::read_records`] reads the log itself
    /// instead of asking the driver (module `readers`).
    readers: Option<super::LogReaders>,
}

/// What a handle call returns when the node task is gone.
fn stopped<T>(_: T) -> NodeError {
    NodeError::Stopped
}

impl NodeHandle {
    /// A handle and the command queue to pass to [`Node::run`].
    pub fn new() -> (NodeHandle, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_MAX);
        (NodeHandle { commands, readers: None }, receiver)
    }

    /// This handle reading logs through `readers` (the driver's: [`Node::readers`]) rather than
    /// through the driver's loop, so reads never wait for (nor delay) its rounds.
    pub fn reading_from(self, readers: super::LogReaders) -> NodeHandle {
        NodeHandle { readers: Some(readers), ..self }
    }

    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (reply, receiver) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(stopped)?;
        receiver.await.map_err(stopped)
    }

    /// Proposes and waits for the outcome (see [`Node::propose`]).
    pub async fn propose(&self, group: GroupId, data: Bytes, meta: EntryMeta) -> Result<Appended, ProposeError> {
        self.submit(group, data, meta, Durability::Committed).await.outcome().await
    }

    /// Queues a proposal and returns once it is queued: proposals submitted one after another
    /// (each `submit` awaited before the next) reach raft in that order. Await the ticket's
    /// [`ProposalTicket::outcome`] for the result.
    pub async fn submit(&self, group: GroupId, data: Bytes, meta: EntryMeta, durability: Durability) -> ProposalTicket {
        let (reply, receiver) = oneshot::channel();
        match self.commands.send(Command::Propose { group, data, meta, durability, reply }).await {
            Ok(()) => ProposalTicket { group, receiver: Some(receiver) },
            Err(_) => ProposalTicket { group, receiver: None },
        }
    }

    /// See [`Node::destroy_group`].
    pub async fn destroy_group(&self, group: GroupId) -> Result<bool, NodeError> {
        self.call(|reply| Command::DestroyGroup { group, reply }).await?
    }

    /// See [`Node::set_aside_group`].
    pub async fn set_aside_group(&self, group: GroupId, only_unfinished: bool) -> Result<Option<std::path::PathBuf>, NodeError> {
        self.call(|reply| Command::SetAsideGroup { group, only_unfinished, reply }).await?
    }

    /// See [`Node::destroy_stray_groups`].
    pub async fn destroy_stray_groups(&self, keep: std::collections::BTreeSet<GroupId>) -> Result<Vec<GroupId>, NodeError> {
        self.call(|reply| Command::DestroyStrayGroups { keep, reply }).await?
    }

    /// Asks `group` on this node to start an election now.
    pub async fn campaign(&self, group: GroupId) -> Result<(), NodeError> {
        self.call(|reply| Command::Campaign { group, reply }).await?
    }

    /// See [`Node::read_records`]: through the log readers when this handle has them (then
    /// also never past what the driver published as committed), else through the driver.
    pub async fn read_records(
        &self,
        group: GroupId,
        offset: u64,
        bytes_max: u64,
        index_max: u64,
    ) -> Result<Vec<odradek_log::Entry>, NodeError> {
        let Some(readers) = &self.readers else {
            return self.call(|reply| Command::ReadRecords { group, offset, bytes_max, index_max, reply }).await?;
        };
        let reader = readers.get(group).ok_or(NodeError::GroupUnknown(group))?;
        reader.read_offsets(offset, bytes_max, index_max).await.map_err(|e| super::errors::storage_error(group)(e.into()))
    }

    /// The planted `ServeAboveCommit`: [`NodeHandle::read_records`] to the end of what the log
    /// wrote, committed or not (needs the log readers).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub async fn read_records_past_commit(
        &self,
        group: GroupId,
        offset: u64,
        bytes_max: u64,
    ) -> Result<Vec<odradek_log::Entry>, NodeError> {
        let reader = self.readers.as_ref().and_then(|readers| readers.get(group)).ok_or(NodeError::GroupUnknown(group))?;
        reader.read_offsets_past_commit(offset, bytes_max).await.map_err(|e| super::errors::storage_error(group)(e.into()))
    }

    /// See [`Node::log_bounds`].
    pub async fn log_bounds(&self, group: GroupId) -> Result<Option<LogBounds>, NodeError> {
        self.call(|reply| Command::LogBounds { group, reply }).await
    }

    /// Proposes a membership change and waits for the outcome.
    pub async fn propose_conf_change(&self, group: GroupId, change: ConfChangeV2) -> Result<Appended, ProposeError> {
        match self.call(|reply| Command::ProposeConfChange { group, change, reply }).await {
            Ok(proposal) => proposal.await,
            Err(_) => Err(ProposeError::Stopped(group)),
        }
    }

    pub async fn create_group(&self, group: GroupId, voters: Vec<NodeId>, state_machine_applied: u64) -> Result<(), NodeError> {
        self.call(|reply| Command::CreateGroup { group, voters, state_machine_applied, log_config: None, joining: false, reply }).await?
    }

    /// [`NodeHandle::create_group`] with the group's own log settings.
    pub async fn create_group_with(
        &self,
        group: GroupId,
        voters: Vec<NodeId>,
        state_machine_applied: u64,
        log_config: LogConfig,
    ) -> Result<(), NodeError> {
        let log_config = Some(log_config);
        self.call(|reply| Command::CreateGroup { group, voters, state_machine_applied, log_config, joining: false, reply }).await?
    }

    /// See [`Node::create_group_joining`].
    pub async fn create_group_joining(&self, group: GroupId, voters: Vec<NodeId>, log_config: LogConfig) -> Result<(), NodeError> {
        let log_config = Some(log_config);
        self.call(|reply| Command::CreateGroup { group, voters, state_machine_applied: 0, log_config, joining: true, reply }).await?
    }

    pub async fn remove_group(&self, group: GroupId) -> Result<bool, NodeError> {
        self.call(|reply| Command::RemoveGroup { group, reply }).await
    }

    /// [`Node::read_index`]: a commit index that a leader confirmed after this call began.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, NodeError> {
        self.call(|reply| Command::ReadIndex { group, reply }).await?
    }

    pub async fn transfer_leader(&self, group: GroupId, to: NodeId, cause: HandOverCause) -> Result<(), NodeError> {
        self.call(|reply| Command::TransferLeader { group, to, cause, reply }).await?
    }

    /// See [`Node::set_lead_refusals`].
    pub async fn set_lead_refusals(&self, refusals: LeadRefusals) -> Result<(), NodeError> {
        self.call(|reply| Command::SetLeadRefusals { refusals, reply }).await
    }

    /// [`Node::enforce_retention`]: deletes `group`'s segments out of retention, never one
    /// holding the applied commit or an index at or above `index_bound_max` (the state machine's
    /// own bound: `u64::MAX` for none) or above `start_state`'s, which is saved first.
    pub async fn enforce_retention(
        &self,
        group: GroupId,
        index_bound_max: u64,
        start_state: Option<StartState>,
    ) -> Result<RetentionReport, NodeError> {
        self.call(|reply| Command::EnforceRetention { group, index_bound_max, start_state, reply }).await?
    }

    /// The group's raft status and applied configuration.
    pub async fn status(&self, group: GroupId) -> Result<Option<(GroupStatus, ConfState)>, NodeError> {
        self.call(|reply| Command::Status { group, reply }).await
    }

    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// See [`Node::leading`].
    pub async fn leading(&self) -> Result<std::collections::BTreeSet<GroupId>, NodeError> {
        self.call(|reply| Command::Leading { reply }).await
    }

    /// See [`Node::retention_candidates`].
    pub async fn retention_candidates(&self) -> Result<std::collections::BTreeSet<GroupId>, NodeError> {
        self.call(|reply| Command::RetentionCandidates { reply }).await
    }

    /// See [`Node::retention_overdue`].
    pub async fn retention_overdue(&self, group: GroupId) -> Result<usize, NodeError> {
        self.call(|reply| Command::RetentionOverdue { group, reply }).await?
    }

    /// The node's new incarnation has finished joining: from now on an empty log is a replica
    /// new to its group, not one this node lost (`NodeConfig::empty_logs_suspect` turns off;
    /// groups already open keep what they opened with).
    pub async fn end_joining(&self) -> Result<(), NodeError> {
        self.call(|reply| Command::EndJoining { reply }).await
    }

    /// See [`Node::end_passive`].
    pub async fn end_passive(&self) -> Result<(), NodeError> {
        self.call(|reply| Command::EndPassive { reply }).await
    }

    /// See [`Node::drain`].
    pub async fn drain(&self) -> Result<usize, NodeError> {
        self.call(|reply| Command::Drain { reply }).await
    }

    /// Indefinite proposal outcomes resolved since the last call (see [`Node::take_resolved_outcomes`]).
    pub async fn take_resolved_outcomes(&self) -> Result<Vec<ResolvedOutcome>, NodeError> {
        self.call(|reply| Command::TakeResolvedOutcomes { reply }).await
    }
}

/// A queued proposal (see [`NodeHandle::submit`]).
#[derive(Debug)]
pub struct ProposalTicket {
    group: GroupId,
    /// `None`: the node task was gone before the proposal was queued.
    receiver: Option<oneshot::Receiver<Proposal>>,
}

impl ProposalTicket {
    /// Waits for the proposal's outcome.
    pub async fn outcome(self) -> Result<Appended, ProposeError> {
        let Some(receiver) = self.receiver else { return Err(ProposeError::Stopped(self.group)) };
        match receiver.await {
            Ok(proposal) => proposal.await,
            // The task went away with the command queued but not taken: never proposed.
            Err(_) => Err(ProposeError::Stopped(self.group)),
        }
    }
}

impl<D: Disk, T: Transport, A: Apply> Node<D, T, A> {
    /// Runs the node until every [`NodeHandle`] is dropped (`Ok`) or a round fails (`Err`).
    /// `clock_ms` gives wall-clock milliseconds (the log's segment age and retention).
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        tick_interval: Duration,
        clock_ms: impl Fn() -> i64,
    ) -> Result<(), NodeError> {
        let mut ticker = tokio::time::interval(tick_interval);
        // After a slow round, tick once, not in a burst: a burst of ticks would run out
        // followers' election timers before the leader's heartbeats (late for the same reason)
        // arrive, and an overloaded node would then start elections instead of catching up.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inbox_open = true;
        // With hibernation (the mode for many quiet groups) a command that changes no raft
        // state (a status or stats query, log bounds, retention) runs no round: the controller
        // asks every hosted partition such things every few seconds, and a round visits every
        // awake group. Off, every wake-up runs a round, as simulated schedules always did.
        let skip_quiet_rounds = self.config.hibernate;
        loop {
            let mut round_due = true;
            // Biased: tokio's unbiased `select!` draws from a process-global seed, so a simulation
            // would depend on what ran before it in the process. The order is also a priority: the periodic tick, then peers' messages
            // (bounded by raft's own traffic), then commands, which the loop below drains anyway.
            tokio::select! {
                biased;
                _ = ticker.tick() => self.tick(),
                batch = self.inbox.recv(), if inbox_open => match batch {
                    Some(batch) => self.step_batch(batch),
                    // The transport is gone: nothing more arrives; keep ticking and serving.
                    None => inbox_open = false,
                },
                command = commands.recv() => match command {
                    Some(command) => {
                        round_due = !(skip_quiet_rounds && command.changes_no_raft_state());
                        self.execute(command, clock_ms()).await;
                    }
                    None => return Ok(()),
                },
            }
            for _ in 1..COMMANDS_PER_ROUND_MAX {
                let Ok(command) = commands.try_recv() else { break };
                round_due |= !(skip_quiet_rounds && command.changes_no_raft_state());
                self.execute(command, clock_ms()).await;
            }
            if round_due {
                self.round(clock_ms()).await?;
            }
        }
    }

    async fn execute(&mut self, command: Command, now_ms: i64) {
        // A reply nobody waits for any more is fine to drop.
        match command {
            Command::Propose { group, data, meta, durability, reply } => drop(reply.send(self.propose_with(group, data, meta, durability))),
            Command::ProposeConfChange { group, change, reply } => drop(reply.send(self.propose_conf_change(group, change))),
            Command::CreateGroup { group, voters, state_machine_applied, log_config, joining, reply } => {
                let log_config = log_config.unwrap_or_else(|| self.config.log_config.clone());
                let created = match joining {
                    false => self.create_group_with(group, &voters, state_machine_applied, now_ms, log_config).await,
                    true => self.create_group_joining(group, &voters, now_ms, log_config).await,
                };
                drop(reply.send(created));
            }
            Command::RemoveGroup { group, reply } => drop(reply.send(self.remove_group(group))),
            Command::TransferLeader { group, to, cause, reply } => drop(reply.send(self.transfer_leader(group, to, cause))),
            Command::EnforceRetention { group, index_bound_max, start_state, reply } => {
                drop(reply.send(self.enforce_retention(group, now_ms, index_bound_max, start_state).await))
            }
            Command::Status { group, reply } => {
                let status = self.status(group).zip(self.conf_state(group));
                drop(reply.send(status));
            }
            Command::Stats { reply } => drop(reply.send(self.stats())),
            Command::Leading { reply } => drop(reply.send(self.leading())),
            Command::RetentionCandidates { reply } => drop(reply.send(self.retention_candidates())),
            Command::RetentionOverdue { group, reply } => drop(reply.send(self.retention_overdue(group, now_ms))),
            Command::Drain { reply } => drop(reply.send(self.drain())),
            Command::SetLeadRefusals { refusals, reply } => {
                self.set_lead_refusals(refusals);
                let _ = reply.send(());
            }
            Command::EndPassive { reply } => {
                self.end_passive();
                let _ = reply.send(());
            }
            Command::EndJoining { reply } => {
                self.config.empty_logs_suspect = false;
                let _ = reply.send(());
            }
            Command::Campaign { group, reply } => drop(reply.send(self.campaign(group))),
            Command::DestroyGroup { group, reply } => drop(reply.send(self.destroy_group(group).await)),
            Command::SetAsideGroup { group, only_unfinished, reply } => {
                drop(reply.send(self.set_aside_group(group, only_unfinished).await))
            }
            Command::DestroyStrayGroups { keep, reply } => drop(reply.send(self.destroy_stray_groups(&keep).await)),
            Command::ReadRecords { group, offset, bytes_max, index_max, reply } => {
                drop(reply.send(self.read_records(group, offset, bytes_max, index_max).await));
            }
            Command::LogBounds { group, reply } => drop(reply.send(self.log_bounds(group))),
            Command::TakeResolvedOutcomes { reply } => drop(reply.send(self.take_resolved_outcomes())),
            Command::ReadIndex { group, reply } => self.read_index(group, now_ms, reply),
        }
    }
}
