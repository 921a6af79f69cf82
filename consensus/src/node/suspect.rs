//! Suspect replicas: protocol-aware recovery of a damaged last entry (CHECKLISTS R8 e; DESIGN.md
//! "Disk faults").
//!
//! Recovery cuts a damaged last entry off a log, because a torn write at power loss looks like
//! that. Bit rot in an entry the replica had fsynced and acknowledged looks the same. If the
//! replica then voted as usual it could elect a candidate that lacks an entry committed with its
//! own lost acknowledgement, and that entry would be overwritten. So a cut that may have taken a
//! whole entry makes the replica *suspect* from the cut index `c` up to a bound `U` (the most
//! entries the cut bytes could hold; see `odradek_log::TornTail::index_bound`). The group store
//! saves the suspicion together with a new term (no vote) before it cuts. While suspect, the
//! replica:
//! - never campaigns (it does not tick and drops `MsgTimeoutNow`);
//! - grants a vote or pre-vote only to a candidate whose log provably holds everything it may
//!   have lost: last term at least the suspicion's term `T_s` (the term when it cut; every lost
//!   entry is of `T_s` or older) and last index at least the current bound (below). Such a
//!   candidate's last entry comes from a leader of term `T_s` or later, which held every
//!   committed entry up to there, and by log matching so does the candidate. Without this,
//!   after a power loss that left the only complete log on one node and torn tails on the
//!   others, nobody could be elected;
//! - still accepts appends and snapshots from leaders, and acknowledges what it then holds.
//!
//! It clears, durably, once its log is durable up to a *bound* that covers every entry that can
//! have been committed with its lost acknowledgements. The bound starts as `U`; it drops to `A`
//! once every other voter has answered a query: "my last index is `A_i`" (`A` is the largest),
//! or once enough of them answered that this replica together with the voters still silent is
//! no quorum of its configuration (a majority of each half of a joint one; an answerer whose own
//! replica is suspect or quarantined counts as silent, since it may hold less than it
//! acknowledged, as after rot on two of five voters): with three voters
//! that is every other one, with five any three of the four others, and in a joint
//! configuration whose other half the silent voters are no majority of, fewer (a move stuck on a
//! voter that cannot answer, e.g. one whose node is quarantined and never created the group).
//! With `A < c` the replica clears at once. Why this is safe:
//! - The query carries the replica's new term `T_q`, and an answerer first moves to `T_q` if it
//!   is behind (a new term is saved before any message leaves, R6). A leader that may still
//!   count the lost acknowledgements is of a term below `T_q`. So after answering, no answerer
//!   takes an entry from such a leader.
//! - An entry committed with the replica's lost acknowledgement is durable on a quorum, and F-S3
//!   damages one item on a minority only. So some other voter holds it intact, at an index no
//!   higher than that voter's answer. The largest answer `A` covers it. With some voters
//!   silent: that quorum is not within this replica, the silent voters and the unsound
//!   answerers (they are no quorum), so it holds a sound answerer, whose log was never cut. (An entry committed before the configuration this
//!   replica applied is on a majority of each half too: the configuration's own entry was
//!   committed by one, and log matching gives them every earlier entry.) An old leader that
//!   commits later still needs an answerer's acknowledgement, given before its answer.
//! - Appends come only from leaders elected without this replica's vote. By raft's own
//!   argument, such a leader holds every committed entry, so a log filled by it up to `A` (or
//!   `U`) holds every entry the replica could have helped commit.
//!
//! After a power loss of every node, each replica may be suspect with its own torn tail, and
//! none could clear by appends (no leader without votes). The query settles it: the answers come
//! from suspect replicas too, and a torn tail on all of them means no intact copy of the entry
//! exists anywhere, so it was never committed.
//!
//! The query and answer travel as raft messages of a type raft keeps local (`MsgCheckQuorum`),
//! marked by their context; the driver takes them out before raft sees them.
//!
//! A replica also turns suspect at run time when a leader shows that its log is behind what it
//! acknowledged ([`behind`]): its data directory was replaced by an older copy of itself, or
//! wiped (issue 19). raft-rs would abort on that leader's heartbeat ("to_commit N is out of
//! range [last_index M]"); instead the driver drops it and saves a suspicion from the end of
//! the log with a bound it cannot know ([`BOUND_UNKNOWN`]: only the other voters' answers settle
//! it) and a term above the leader's, so that leader, which counts the lost acknowledgements,
//! steps down when it hears from this replica. The lost entries are of the leader's term or
//! older. The replica then catches up from a leader elected without its vote, like any suspect.
//! (This cannot undo what the replica did before a leader showed it: a restored copy may also
//! hold an older vote. Rejoining under a new identity is the operations issue's.)
//!
//! # Quarantine
//! A group whose files refuse to open (corruption) is not hosted, but this node still answers
//! the suspect queries of its other replicas from what its files hold ([`Quarantined`]: the highest
//! intact index, scanned once), raising the group's saved term to each query's first so the
//! answer's promise holds if the group opens later. A node that cannot run its metadata group
//! hosts every other group it has files for ([`Node::host_groups_on_disk`]) and turns passive:
//! it serves no client, so it hands the leadership of any group it wins to a caught-up follower.

use std::collections::BTreeMap;

use odradek_log::{Disk, Suspicion};
use raft::eraftpb::{ConfState, Message, MessageType};
use raft::StateRole;

use crate::observe;
use crate::transport::{GroupId, NodeId};

use super::errors::{storage_error, NodeError};
use super::Node;

/// A suspect replica asks every other voter again after this many of its ticks without a full
/// set of answers (the first query goes out on its first tick).
pub(super) const QUERY_INTERVAL_TICKS: usize = 10;

const QUERY_CONTEXT: &[u8] = b"odradek/suspect-query";
const ANSWER_CONTEXT: &[u8] = b"odradek/suspect-answer";

/// The bound of a suspicion found at run time: what the replica acknowledged before its log
/// went back is unknown, so only every other voter's answer settles it.
pub(super) const BOUND_UNKNOWN: u64 = u64::MAX;

/// The suspicion of a replica that may have lost its whole log (its node's data directory is a
/// new incarnation: CHECKLISTS R8 d): anything from index 1, of any term, may be gone. Such a
/// replica grants no vote at all until it clears ([`Suspect::lost_whole_log`]): a candidate's
/// last term proves nothing when the lost entries' terms are unknown. It still answers the
/// other replicas' queries and takes appends, so a cluster whose every node is new (its
/// bootstrap) settles at once: every answer is 0.
pub(crate) const WHOLE_LOG_LOST: Suspicion = Suspicion { cut: 1, bound: BOUND_UNKNOWN, term: 0 };

/// A leader's heartbeat showing this replica's log behind what it acknowledged.
#[derive(Clone, Copy, Debug)]
pub(super) struct Behind {
    pub leader: NodeId,
    pub leader_term: u64,
    /// The heartbeat's commit index, above `last_index`.
    pub commit: u64,
    /// This replica's last index.
    pub last_index: u64,
}

impl Behind {
    /// What the replica may have lost: everything after its log's end, of the leader's term or
    /// older (see the module documentation).
    pub fn suspicion(&self) -> Suspicion {
        Suspicion { cut: self.last_index + 1, bound: BOUND_UNKNOWN, term: self.leader_term }
    }
}

/// Whether `message` shows a replica at `term` whose log ends at `last_index` behind what it
/// acknowledged. raft-rs sends a heartbeat's commit as the smaller of the follower's matched
/// index and the leader's commit, so a commit above the log's end means this replica once
/// acknowledged entries it no longer holds. (An append's commit is the leader's own and proves
/// nothing; raft-rs takes only its part within the append.) A heartbeat of an older term never
/// reaches raft's commit.
pub(super) fn behind(message: &Message, term: u64, last_index: u64) -> Option<Behind> {
    let shows = message.get_msg_type() == MessageType::MsgHeartbeat && message.term >= term && message.commit > last_index;
    shows.then_some(Behind { leader: message.from, leader_term: message.term, commit: message.commit, last_index })
}

/// The state of a suspect group on this node.
#[derive(Debug)]
pub(super) struct Suspect {
    pub suspicion: Suspicion,
    /// This node's term when the group opened suspect: answers count only for this query term.
    pub query_term: u64,
    /// Every answer for `query_term`: the answerer's last index, and whether the answerer may
    /// itself hold less than it acknowledged (its own replica suspect, or quarantined).
    pub answers: BTreeMap<NodeId, (u64, bool)>,
    /// Ticks since the group opened suspect.
    pub ticks: usize,
}

impl Suspect {
    pub fn new(suspicion: Suspicion, query_term: u64) -> Suspect {
        assert!(suspicion.cut <= suspicion.bound, "suspect for {}..={}", suspicion.cut, suspicion.bound);
        // The store saved a new term with the suspicion: every lost entry is of an older one.
        assert!(query_term > suspicion.term, "query term {query_term} not past the cut's term {}", suspicion.term);
        Suspect { suspicion, query_term, answers: BTreeMap::new(), ticks: 0 }
    }

    /// The index up to which the log must be durable before the suspicion clears, given the
    /// group's configuration (module documentation: every other voter answered, or enough of
    /// them that this replica and the silent ones are no quorum).
    pub fn bound(&self, voters: &Voters) -> u64 {
        let others = voters.others();
        let all_answered = others.iter().all(|id| self.answers.contains_key(id));
        // Answerers that may have lost entries themselves count as silent: the quorum that holds
        // a lost acknowledgement must hold a sound answerer, whose last index covers the entry.
        let sound = |id: NodeId| self.answers.get(&id).is_some_and(|&(_, unsound)| !unsound);
        if all_answered || !voters.is_quorum(|id| id == voters.me || !sound(id)) {
            let answered = others.iter().filter_map(|id| self.answers.get(id)).map(|&(index, _)| index).max().unwrap_or(0);
            self.suspicion.bound.min(answered)
        } else {
            self.suspicion.bound
        }
    }

    /// Whether `candidate`, whose log ends at (`last_term`, `last_index`), holds every entry
    /// this replica may have lost (see the module documentation).
    ///
    /// A replica that may have lost its whole log judges no candidate by its last term, with
    /// one exception: a candidate in every quorum of the configuration (the other voter of a
    /// group of two, [`Voters::in_every_quorum`]) that answered its query soundly and still
    /// holds its answer. Every committed entry was durable on a quorum, so on that candidate,
    /// whose log was never cut; elected, it holds every committed entry, and this replica's
    /// vote counts for no entry it lost (R8 d). Without it, a group of two with one replica
    /// rebuilt could never elect a leader again: the other alone is no quorum.
    pub fn may_vote_for(&self, voters: &Voters, candidate: NodeId, last_term: u64, last_index: u64) -> bool {
        if self.lost_whole_log() {
            let sound = self.answers.get(&candidate).is_some_and(|&(_, unsound)| !unsound);
            return voters.in_every_quorum(candidate) && sound && last_index >= self.bound(voters);
        }
        last_term >= self.suspicion.term && last_index >= self.bound(voters)
    }

    /// Whether everything from index 1 may be lost with an unknown bound ([`WHOLE_LOG_LOST`], or
    /// a leader showed an empty log behind): no vote at all until the suspicion clears.
    pub fn lost_whole_log(&self) -> bool {
        self.suspicion.cut == 1 && self.suspicion.bound == BOUND_UNKNOWN
    }

    /// Notes an answer; one for another query term (an earlier opening) is ignored.
    pub fn note_answer(&mut self, from: NodeId, answer: &Message) {
        if answer.log_term == self.query_term && answer.term >= self.query_term {
            self.answers.insert(from, (answer.index, answer.reject));
        }
    }
}

/// A control message of this module, taken out of the inbound raft messages.
pub(super) enum Control {
    /// "I am suspect from `cut`, at query term `term`: what is your last index?"
    Query {
        term: u64,
    },
    Answer,
}

pub(super) fn classify(message: &Message) -> Option<Control> {
    if message.get_msg_type() != MessageType::MsgCheckQuorum {
        return None;
    }
    match message.get_context() {
        QUERY_CONTEXT => Some(Control::Query { term: message.term }),
        ANSWER_CONTEXT => Some(Control::Answer),
        _ => None,
    }
}

/// The query a suspect replica sends to voter `to`.
pub(super) fn query(from: NodeId, to: NodeId, suspect: &Suspect) -> Message {
    let mut message = control(from, to, QUERY_CONTEXT);
    message.term = suspect.query_term;
    message.index = suspect.suspicion.cut;
    message
}

/// The answer of a replica at `term` (at least the query's) whose log ends at `last_index`;
/// `unsound`: the answerer may itself hold less than it acknowledged (its replica is suspect, or
/// quarantined), carried in `reject`.
pub(super) fn answer(from: NodeId, to: NodeId, query_term: u64, term: u64, last_index: u64, unsound: bool) -> Message {
    assert!(term >= query_term, "an answer at term {term} below its query's {query_term}");
    let mut message = control(from, to, ANSWER_CONTEXT);
    message.term = term;
    message.log_term = query_term;
    message.index = last_index;
    message.reject = unsound;
    message
}

/// A control message of the driver's own (suspect queries and answers, hibernation's sleep, wake
/// and alive messages): a `MsgCheckQuorum`, which raft never sends between nodes, told apart by
/// its context.
pub(super) fn control(from: NodeId, to: NodeId, context: &[u8]) -> Message {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgCheckQuorum);
    message.from = from;
    message.to = to;
    message.set_context(context.to_vec().into());
    message
}

/// An answer the driver owes: sent at the end of the round, once any term it moved to is saved.
#[derive(Clone, Copy, Debug)]
pub(super) struct AnswerDue {
    pub to: NodeId,
    pub group: GroupId,
    pub query_term: u64,
}

/// A group this node does not host but answers suspect queries for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Quarantined {
    pub(super) intact_index_max: u64,
    /// Its saved hard state is known to be at this term or later.
    pub(super) term: u64,
}

/// The voters of a suspect replica's group (both halves of a joint configuration), as its
/// answers are weighed: `me` is the suspect replica's node.
#[derive(Clone, Debug)]
pub(super) struct Voters {
    pub me: NodeId,
    incoming: Vec<NodeId>,
    outgoing: Vec<NodeId>,
}

impl Voters {
    pub fn of(conf: &ConfState, me: NodeId) -> Voters {
        Voters { me, incoming: conf.voters.clone(), outgoing: conf.voters_outgoing.clone() }
    }

    /// A configuration without a joint half (tests).
    #[cfg(test)]
    pub fn simple(me: NodeId, voters: &[NodeId]) -> Voters {
        Voters { me, incoming: voters.to_vec(), outgoing: Vec::new() }
    }

    /// The voters other than `me`, sorted.
    pub fn others(&self) -> Vec<NodeId> {
        let mut others: Vec<NodeId> = self.incoming.iter().chain(&self.outgoing).copied().filter(|&id| id != self.me).collect();
        others.sort_unstable();
        others.dedup();
        others
    }

    /// Whether `candidate` belongs to every quorum of this configuration (a voter of each half
    /// whose other voters are no majority of it without it): two voters, or a joint
    /// configuration of such halves.
    pub fn in_every_quorum(&self, candidate: NodeId) -> bool {
        !self.is_quorum(|id| id != candidate)
    }

    /// Whether the nodes `member` holds could commit an entry by themselves: a majority of each
    /// half (raft's joint quorum; an empty outgoing half asks nothing).
    pub fn is_quorum(&self, member: impl Fn(NodeId) -> bool) -> bool {
        let majority = |half: &[NodeId]| half.iter().filter(|&&id| member(id)).count() * 2 > half.len();
        majority(&self.incoming) && (self.outgoing.is_empty() || majority(&self.outgoing))
    }
}

/// The voters of `conf` (both halves of a joint configuration) other than `node`.
pub(super) fn other_voters(conf: &ConfState, node: NodeId) -> Vec<NodeId> {
    Voters::of(conf, node).others()
}

impl<D: Disk, T, A> Node<D, T, A> {
    /// A message to a group not hosted here: a suspect query is answered when the group is
    /// quarantined (see [`Quarantined`]); anything else is dropped.
    pub(super) fn answer_for_quarantined(&mut self, from: NodeId, group: GroupId, message: &Message) {
        if let (Some(Control::Query { term }), true) = (classify(message), self.quarantined.contains_key(&group)) {
            self.answers_due.push(AnswerDue { to: from, group, query_term: term });
        }
    }

    /// Screens a message to hosted `group` before raft sees it: takes this module's queries and
    /// answers out, and drops the vote requests and hand-overs a suspect replica must not act
    /// on. `true`: the message is consumed (raft never sees it).
    pub(super) fn screen_for_suspect(&mut self, from: NodeId, group: GroupId, message: &Message) -> bool {
        let node = self.config.node_id;
        let state = self.groups.get_mut(&group).expect("screened only for hosted groups");
        match classify(message) {
            Some(Control::Query { term }) => {
                // Move to the query's term first (saved before the answer leaves, R6): from
                // now on no leader of an older term can append here.
                if term > state.raw.raft.term {
                    state.raw.raft.become_follower(term, raft::INVALID_ID);
                }
                self.answers_due.push(AnswerDue { to: from, group, query_term: term });
                return true;
            }
            Some(Control::Answer) => {
                if let Some(suspect) = state.suspect.as_mut() {
                    suspect.note_answer(from, message);
                }
                return true;
            }
            None => {}
        }
        let Some(suspect) = &state.suspect else { return false };
        let refused = match message.get_msg_type() {
            MessageType::MsgTimeoutNow => true,
            kind @ (MessageType::MsgRequestVote | MessageType::MsgRequestPreVote) => {
                let voters = Voters::of(&state.store.storage().conf_state(), node);
                #[allow(unused_mut)] // changed only by a planted bug
                let mut allowed = suspect.may_vote_for(&voters, message.from, message.log_term, message.index);
                #[cfg(any(madsim, feature = "planted-bugs"))]
                if self.config.planted.suspect_vote_by_term_only {
                    allowed = message.log_term >= suspect.suspicion.term;
                }
                if allowed && kind == MessageType::MsgRequestVote {
                    let (to, term, bound) = (message.from, message.term, suspect.bound(&voters));
                    let (last_term, last_index) = (message.log_term, message.index);
                    observe::emit(|| observe::Event::SuspectVote { node, group, to, term, last_term, last_index, bound });
                }
                !allowed
            }
            _ => false,
        };
        if refused {
            self.stats.votes_refused_suspect += 1;
        }
        refused
    }

    /// Answers suspect queries for `group` without hosting it (see `quarantined`). The owner retries
    /// a failed open now and then; the files are scanned once.
    pub(super) async fn quarantine(&mut self, group: GroupId) {
        if self.quarantined.contains_key(&group) {
            return;
        }
        let log_dir = self.config.data_dir.join(group.to_string()).join(crate::storage::LOG_DIR);
        match odradek_log::highest_intact_index(&self.disk, &log_dir).await {
            Ok(intact_index_max) => {
                self.quarantined.insert(group, Quarantined { intact_index_max, term: 0 });
            }
            Err(scan) => tracing::warn!(group, %scan, "cannot scan a log for suspect queries"),
        }
    }

    /// Whether a leader's heartbeat shows `group`'s log behind what this replica acknowledged:
    /// then the message is dropped (raft-rs would abort on it) and the replica turns suspect in
    /// this round ([`Node::open_behind_suspicions`]).
    pub(super) fn screen_behind(&mut self, group: GroupId, message: &Message) -> bool {
        let raft = &self.groups[&group].raw.raft;
        let Some(behind) = behind(message, raft.term, raft.raft_log.last_index()) else { return false };
        self.behind_due.entry(group).or_insert(behind);
        true
    }

    /// Turns suspect every group whose log a leader showed behind what this replica acknowledged:
    /// the suspicion is saved with a term above that leader's before any message of this round
    /// leaves, so the leader counting the lost acknowledgements steps down when it hears from
    /// this replica, and no vote goes out until the suspicion is settled.
    pub(super) async fn open_behind_suspicions(&mut self) -> Result<(), NodeError> {
        let node = self.config.node_id;
        for (group, behind) in std::mem::take(&mut self.behind_due) {
            let Some(state) = self.groups.get_mut(&group) else { continue };
            // The log may have moved since the heartbeat was screened (an append or a snapshot
            // later in the same round refilled it): what it acknowledged and lost before is
            // still unknown past the commit the heartbeat showed, so the suspicion opens anyway
            // (conservative: it settles once the other voters answer).
            let last_index = state.raw.raft.raft_log.last_index();
            if behind.commit <= last_index {
                tracing::info!(group, ?behind, last_index, "refilled in the round that showed it behind; suspect all the same");
            }
            let term = state.raw.raft.term.max(behind.leader_term) + 1;
            tracing::error!(
                group,
                leader = behind.leader,
                leader_term = behind.leader_term,
                acknowledged = behind.commit,
                last_index = behind.last_index,
                "this replica's log is behind what it acknowledged to the leader (was its data directory replaced \
                 by an older copy, or wiped?): suspect, so out of the group's votes until it has caught up"
            );
            state.store.open_suspicion(behind.suspicion(), term).await.map_err(storage_error(group))?;
            state.raw.raft.become_follower(term, raft::INVALID_ID);
            let suspicion = state.store.suspicion().expect("just saved");
            state.suspect = Some(Suspect::new(suspicion, term));
            self.stats.logs_found_behind += 1;
            let (cut, bound, term) = (suspicion.cut, suspicion.bound, suspicion.term);
            observe::emit(|| observe::Event::Suspect { node, group, cut, bound, term });
        }
        Ok(())
    }

    /// Whether the node is low on disk (see `NodeConfig::lead_room_bytes_min`).
    pub(super) fn disk_low(&self) -> bool {
        let Some(budget) = &self.config.entry_budget else { return false };
        let room_min = i64::try_from(self.config.lead_room_bytes_min.max(1)).unwrap_or(i64::MAX);
        budget.load(std::sync::atomic::Ordering::Acquire) < room_min
    }

    /// A passive node (see [`Node::host_groups_on_disk`]), a draining one ([`Node::drain`]) or one
    /// low on disk asks raft to hand every group it leads to a follower that holds its whole log
    /// and may lead (module `hand_over`), a different one each try (one that drops the hand-over
    /// anyway, as a replica turning suspect meanwhile does, is given up on by raft after an
    /// election timeout).
    pub(super) fn hand_off_leadership(&mut self) {
        let turn = if let Some(ticks) = self.passive.as_mut() {
            *ticks += 1;
            *ticks as usize
        } else if let Some(ticks) = self.draining.as_mut() {
            *ticks += 1;
            *ticks as usize
        } else if self.disk_low() {
            if self.disk_low_ticks == 0 {
                let leading = self.groups.values().filter(|state| state.raw.raft.state == StateRole::Leader).count();
                tracing::warn!(leading, "below the disk reserve: handing the leadership of every group away");
            }
            self.disk_low_ticks += 1;
            self.disk_low_ticks as usize
        } else {
            self.disk_low_ticks = 0;
            return;
        };
        let low = self.passive.is_none() && self.draining.is_none();
        let cause = match (self.passive.is_some(), self.draining.is_some()) {
            (true, _) => observe::HandOverCause::Passive,
            (false, true) => observe::HandOverCause::Drain,
            (false, false) => observe::HandOverCause::DiskLow,
        };
        // Only followers that may lead (module `hand_over`): a suspect one, or one on a
        // quarantined node, would drop the hand-over and stall the group.
        for (group, caught_up) in self.hand_off_candidates() {
            let to = caught_up[turn % caught_up.len()];
            if self.hand_over(group, to, cause).is_ok() {
                self.stats.leaderships_handed_off_disk_low += u64::from(low);
            }
        }
    }

    /// Starts a graceful shutdown: from the next tick on, every group this node leads (the
    /// metadata group too) is handed to a follower that holds its whole log, as a passive node
    /// does. Returns how many groups it leads now; the caller stops once that is 0 (or its
    /// time is up).
    pub fn drain(&mut self) -> usize {
        if self.draining.is_none() {
            tracing::info!("draining: handing the leadership of every group away before stopping");
            self.draining = Some(0);
        }
        self.groups.values().filter(|state| state.raw.raft.state == StateRole::Leader).count()
    }

    /// Raises the saved term of each quarantined group that owes an answer to the query's term
    /// (a later open then takes no entry from a leader of an older term, as the answer promises);
    /// an answer whose raise failed is dropped (the suspect asks again).
    pub(super) async fn raise_quarantined_terms(&mut self) {
        let mut kept = Vec::new();
        for answer in std::mem::take(&mut self.answers_due) {
            let (group, query_term) = (answer.group, answer.query_term);
            if let Some(quarantined) = self.quarantined.get(&group).copied().filter(|quarantined| quarantined.term < query_term) {
                match self.raise_saved_term(group, query_term).await {
                    Ok(term) => {
                        self.quarantined.insert(group, Quarantined { term, ..quarantined });
                    }
                    // A hard state that cannot be read: the group never opens again as it is,
                    // so its answer holds without a raised term.
                    Err(odradek_log::Error::HardStateCorrupt { .. }) => {}
                    Err(error) => {
                        tracing::warn!(group, %error, "cannot raise a quarantined group's term: no answer");
                        continue;
                    }
                }
            }
            kept.push(answer);
        }
        self.answers_due = kept;
    }

    /// Saves `group`'s hard state at `term` (no vote) unless it is there already; returns the
    /// saved term.
    async fn raise_saved_term(&self, group: GroupId, term: u64) -> Result<u64, odradek_log::Error> {
        let path = self.config.data_dir.join(group.to_string()).join(crate::storage::HARD_STATE_FILE);
        let (mut file, saved) = odradek_log::HardStateFile::open(&self.disk, &path).await?;
        if saved.term < term {
            file.save(odradek_log::HardState { term, vote: 0, ..saved }).await?;
        }
        Ok(saved.term.max(term))
    }

    /// Clears, durably, every suspicion whose bound the group's durable log has reached (module
    /// `suspect`).
    pub(super) async fn settle_suspicions(&mut self) -> Result<(), NodeError> {
        let node = self.config.node_id;
        // A sleeping group is never suspect: it fell asleep unsuspected, and a suspicion opens
        // only when the group opens or in a round that stepped a message, which woke it first.
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
            let Some(suspect) = &state.suspect else { continue };
            let bound = suspect.bound(&Voters::of(&state.store.storage().conf_state(), node));
            let durable = state.store.log().durable_index();
            if durable < bound {
                continue;
            }
            // Reported before the save: a save whose fsync fails may still reach the disk, and
            // the replica, reopened, votes again (legitimately: its log reached the bound).
            observe::emit(|| observe::Event::SuspectCleared { node, group, durable });
            state.store.clear_suspicion().await.map_err(storage_error(group))?;
            tracing::info!(group, durable, bound, answers = ?suspect.answers, "suspicion settled: this replica votes again");
            state.suspect = None;
            self.stats.suspicions_cleared += 1;
        }
        Ok(())
    }

    /// Queues the suspect queries due and the answers owed (their terms are saved by now).
    pub(super) fn queue_suspect_messages(&mut self, outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>) {
        let node = self.config.node_id;
        for (to, group) in std::mem::take(&mut self.queries_due) {
            let Some(suspect) = self.groups.get(&group).and_then(|state| state.suspect.as_ref()) else { continue };
            outbox.entry(to).or_default().push((group, query(node, to, suspect)));
        }
        for due in std::mem::take(&mut self.answers_due) {
            let message = match (self.groups.get(&due.group), self.quarantined.get(&due.group)) {
                (Some(state), _) => {
                    let raft = &state.raw.raft;
                    answer(node, due.to, due.query_term, raft.term, raft.raft_log.last_index(), state.suspect.is_some())
                }
                // A group that cannot open takes no entry from any leader: as good as the
                // query's term.
                (None, Some(quarantined)) => answer(node, due.to, due.query_term, due.query_term, quarantined.intact_index_max, true),
                (None, None) => continue,
            };
            outbox.entry(due.to).or_default().push((due.group, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_drops_to_the_largest_answer_once_every_other_voter_answered() {
        let mut suspect = Suspect::new(Suspicion { cut: 10, bound: 14, term: 3 }, 5);
        let answer_at = |term, query_term, index| answer(2, 1, query_term, term, index, false);
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 14);
        suspect.note_answer(2, &answer_at(5, 5, 9));
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 14, "one voter has not answered");
        suspect.note_answer(3, &answer_at(6, 4, 30));
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 14, "an answer to an older query does not count");
        suspect.note_answer(3, &answer_at(6, 5, 12));
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 12);
        suspect.note_answer(3, &answer_at(6, 5, 9));
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 9, "nobody holds anything from the cut on: clear at once");
        assert_eq!(suspect.bound(&Voters::simple(1, &[1])), 0, "a single voter has nobody to ask");
    }

    #[test]
    fn answers_settle_once_this_replica_and_the_silent_voters_are_no_quorum() {
        let answer_at = |index| answer(9, 1, 5, 5, index, false);
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 5);
        // Five voters: a quorum holding a lost acknowledgement holds two others besides node 1,
        // so three answers of four reach one of them.
        let five = Voters::simple(1, &[1, 2, 3, 4, 5]);
        suspect.note_answer(2, &answer_at(20));
        suspect.note_answer(3, &answer_at(30));
        assert_eq!(suspect.bound(&five), BOUND_UNKNOWN, "node 1 with silent 4 and 5 is a quorum");
        suspect.note_answer(4, &answer_at(25));
        assert_eq!(suspect.bound(&five), 30, "node 1 and silent 5 are no quorum of five");
        // Three voters: every other one must answer, as before.
        let three = Voters::simple(1, &[1, 2, 3]);
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 5);
        suspect.note_answer(2, &answer_at(20));
        assert_eq!(suspect.bound(&three), BOUND_UNKNOWN, "node 1 and silent 3 are a quorum of three");
        // Joint: incoming {1, 3, 4}, outgoing {2, 3, 4}. Silent 3 with node 1 is a majority of
        // the incoming half only, so it cannot have committed anything alone: 2 and 4 settle it.
        let mut conf = ConfState::default();
        (conf.voters, conf.voters_outgoing) = (vec![1, 3, 4], vec![2, 3, 4]);
        let joint = Voters::of(&conf, 1);
        assert_eq!(joint.others(), vec![2, 3, 4]);
        suspect.note_answer(4, &answer_at(22));
        assert_eq!(suspect.bound(&joint), 22);
        // Silent 4 with node 1: a majority of the incoming half {1, 4, 5}, not of the outgoing
        // {1, 2, 3}, so no quorum of the joint configuration.
        (conf.voters, conf.voters_outgoing) = (vec![1, 4, 5], vec![1, 2, 3]);
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 5);
        for (from, index) in [(2, 7), (3, 8), (5, 9)] {
            suspect.note_answer(from, &answer_at(index));
        }
        assert_eq!(suspect.bound(&Voters::of(&conf, 1)), 9);
        // Five voters, an entry committed by {1, 2, 3}, rot on 1 and 2, 3 silent: 2's answer is
        // below the entry. Counted as sound, 2, 4 and 5 would settle 1 below it; as the answer of
        // a replica that is itself suspect, it leaves 1, 2 and silent 3 a quorum.
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 5);
        suspect.note_answer(2, &answer(2, 1, 5, 5, 6, true));
        suspect.note_answer(4, &answer_at(6));
        suspect.note_answer(5, &answer_at(6));
        assert_eq!(suspect.bound(&five), BOUND_UNKNOWN, "an unsound answer does not stand for a sound one");
        suspect.note_answer(3, &answer_at(9));
        assert_eq!(suspect.bound(&five), 9, "every other voter answered: the largest answer, as always");
        // A learner's acknowledgements never counted: it and silent 3 are no quorum of {2, 3, 4}.
        let learner = Voters::simple(1, &[2, 3, 4]);
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 5);
        suspect.note_answer(2, &answer_at(11));
        assert_eq!(suspect.bound(&learner), BOUND_UNKNOWN, "silent 3 and 4 are a quorum");
        suspect.note_answer(4, &answer_at(12));
        assert_eq!(suspect.bound(&learner), 12);
    }

    #[test]
    fn a_replica_that_may_have_lost_its_whole_log_grants_no_vote_until_it_clears() {
        // R8 d: the terms of what it lost are unknown, so no candidate's log proves enough.
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, WHOLE_LOG_LOST.term + 1);
        assert!(suspect.lost_whole_log());
        assert!(!suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, u64::MAX, u64::MAX));
        suspect.note_answer(2, &answer(2, 1, 1, 7, 40, false));
        suspect.note_answer(3, &answer(3, 1, 1, 7, 35, false));
        assert_eq!(suspect.bound(&Voters::simple(1, &[1, 2, 3])), 40, "it clears once durable up to the largest answer");
        assert!(!suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 7, 40), "still no vote before it clears");
        let mut bootstrap = Suspect::new(WHOLE_LOG_LOST, 1);
        bootstrap.note_answer(2, &answer(2, 1, 1, 1, 0, false));
        bootstrap.note_answer(3, &answer(3, 1, 1, 1, 0, false));
        assert_eq!(bootstrap.bound(&Voters::simple(1, &[1, 2, 3])), 0, "nobody holds anything: a new cluster settles at once");
        let torn = Suspect::new(Suspicion { cut: 1, bound: 3, term: 2 }, 3);
        assert!(!torn.lost_whole_log(), "a torn tail with a known bound votes by the usual rule");
    }

    #[test]
    fn a_replica_that_lost_its_whole_log_votes_only_for_a_candidate_in_every_quorum() {
        // A group of two: every committed entry is on the other voter, so it may lead.
        let pair = Voters::simple(1, &[1, 2]);
        assert!(pair.in_every_quorum(2) && pair.in_every_quorum(1));
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 1);
        assert!(!suspect.may_vote_for(&pair, 2, 7, 40), "not before it answered: its log may be behind nothing yet known");
        suspect.note_answer(2, &answer(2, 1, 1, 7, 40, false));
        assert!(suspect.may_vote_for(&pair, 2, 7, 40), "the other voter of two holds every committed entry");
        assert!(suspect.may_vote_for(&pair, 2, 1, 41), "whatever its last term");
        assert!(!suspect.may_vote_for(&pair, 2, 7, 39), "not once its log is shorter than its answer");
        assert!(!suspect.may_vote_for(&pair, 3, 7, 40), "not a node outside the configuration");
        // Its answer unsound (its own replica suspect or quarantined): two failures in a pair.
        let mut unsound = Suspect::new(WHOLE_LOG_LOST, 1);
        unsound.note_answer(2, &answer(2, 1, 1, 7, 40, true));
        assert!(!unsound.may_vote_for(&pair, 2, 7, 40), "an answer that may lack entries proves nothing");
        // Three voters: {1, 3} is a quorum without 2, so 2 may lack a committed entry.
        let three = Voters::simple(1, &[1, 2, 3]);
        assert!(!three.in_every_quorum(2));
        let mut suspect = Suspect::new(WHOLE_LOG_LOST, 1);
        suspect.note_answer(2, &answer(2, 1, 1, 7, 40, false));
        suspect.note_answer(3, &answer(3, 1, 1, 7, 35, false));
        assert!(!suspect.may_vote_for(&three, 2, 7, 40), "R8 d: its vote would count for entries it lost");
        // Joint {1, 2} -> {2, 4}: 2 is in every majority of both halves.
        let mut conf = ConfState::default();
        (conf.voters, conf.voters_outgoing) = (vec![2, 4], vec![1, 2]);
        assert!(Voters::of(&conf, 1).in_every_quorum(2));
        (conf.voters, conf.voters_outgoing) = (vec![2, 3, 4], vec![1, 2]);
        assert!(Voters::of(&conf, 1).in_every_quorum(2), "3 and 4 are a majority of the incoming half only");
        (conf.voters, conf.voters_outgoing) = (vec![2, 3, 4], vec![1, 2, 3]);
        assert!(!Voters::of(&conf, 1).in_every_quorum(2), "3 and 4, and 1 and 3, are a joint quorum without 2");
    }

    #[test]
    fn a_vote_goes_only_to_a_candidate_holding_the_bound_in_a_recent_enough_term() {
        let mut suspect = Suspect::new(Suspicion { cut: 10, bound: 14, term: 3 }, 4);
        assert!(!suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 3, 13));
        assert!(!suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 2, 20), "stale entries of an older term prove nothing");
        assert!(suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 3, 14));
        suspect.note_answer(2, &answer(2, 1, 4, 4, 11, false));
        suspect.note_answer(3, &answer(3, 1, 4, 4, 9, false));
        assert!(suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 3, 11), "the answers lowered the bound");
    }

    #[test]
    fn only_a_current_heartbeat_committing_past_the_log_shows_it_behind() {
        let message = |kind, term, commit| {
            let mut message = Message::default();
            message.set_msg_type(kind);
            (message.from, message.term, message.commit) = (2, term, commit);
            message
        };
        let found = behind(&message(MessageType::MsgHeartbeat, 5, 12), 4, 9).expect("behind");
        assert_eq!((found.leader, found.leader_term, found.commit, found.last_index), (2, 5, 12, 9));
        assert_eq!(found.suspicion(), Suspicion { cut: 10, bound: BOUND_UNKNOWN, term: 5 });
        assert!(behind(&message(MessageType::MsgHeartbeat, 5, 9), 5, 9).is_none(), "a commit within the log");
        assert!(behind(&message(MessageType::MsgHeartbeat, 3, 12), 4, 9).is_none(), "a stale leader's");
        assert!(behind(&message(MessageType::MsgAppend, 5, 12), 4, 9).is_none(), "an append's commit is the leader's own");
        let suspect = Suspect::new(found.suspicion(), 6);
        assert!(!suspect.may_vote_for(&Voters::simple(1, &[1, 2, 3]), 2, 9, 1_000_000), "no vote before every other voter answered");
    }

    #[test]
    fn control_messages_are_told_apart_from_raft_messages() {
        let suspect = Suspect::new(Suspicion { cut: 10, bound: 14, term: 3 }, 5);
        assert!(matches!(classify(&query(1, 2, &suspect)), Some(Control::Query { term: 5 })));
        assert!(matches!(classify(&answer(2, 1, 5, 6, 9, false)), Some(Control::Answer)));
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        assert!(classify(&heartbeat).is_none());
    }
}
