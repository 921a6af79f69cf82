//! Per-stage timing of one write (issue 17), off unless a node is given a [`StageClock`]
//! (`NodeConfig::stages`; the server's `--trace-stages`).
//!
//! The leader's driver stamps each traced proposal, keyed by `(group, index)`, as it passes the
//! driver's stages: taken from the command queue (`handed`), its appends handed to the transport
//! (`sent`, before its own write), written to the log (`written`), its own fsync done
//! (`synced`), the first accepting
//! append response from a follower stepped (`acked`), taken as committed (`committed`), applied
//! and its outcome sent (`applied`). The proposer (the server's produce path) takes the stamps
//! with [`StageClock::take`] once it has the outcome, adds its own (frame read, checked, woken,
//! answer written) and reports the whole path. A follower reports its part of each round
//! itself ([`StageClock::follower_round`]): appends stepped, written, fsynced, answers sent.
//!
//! Cost: nothing but an `Option` test when off; with it on, one mutex and a map update per
//! stage per traced proposal (a diagnostic, not for production load).
//!
//! Bounded: at most [`STAGE_TRACES_MAX`] open traces; a proposal that would go past it is not
//! traced (proposals whose proposer never takes them, such as the metadata group's, count
//! until [`StageClock::take`] or a reset of the whole book when it is full).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::transport::GroupId;

/// Open traces held at once; when full, the book is emptied (traces in it are lost).
pub const STAGE_TRACES_MAX: usize = 4096;

/// Where one proposal was when, on its leader's driver. `None`: not reached (yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaderStamps {
    pub handed: Option<Instant>,
    pub written: Option<Instant>,
    pub sent: Option<Instant>,
    pub synced: Option<Instant>,
    pub acked: Option<Instant>,
    pub committed: Option<Instant>,
    pub applied: Option<Instant>,
}

/// The stage stamps of a node's traced proposals (see the module documentation).
#[derive(Debug, Default)]
pub struct StageClock {
    open: Mutex<BTreeMap<(GroupId, u64), LeaderStamps>>,
}

impl StageClock {
    pub fn new() -> StageClock {
        StageClock::default()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, BTreeMap<(GroupId, u64), LeaderStamps>> {
        // A panic while holding the lock leaves only timestamps behind: keep using them.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A proposal at `(group, index)` was taken from the command queue now.
    pub fn handed(&self, group: GroupId, index: u64) {
        let mut book = self.book();
        if book.len() >= STAGE_TRACES_MAX {
            book.clear();
        }
        book.insert((group, index), LeaderStamps { handed: Some(Instant::now()), ..LeaderStamps::default() });
        debug_assert!(book.len() <= STAGE_TRACES_MAX);
    }

    /// Stamps `stage` now on every traced proposal of `group` in `first..=last` that has not
    /// passed it yet.
    pub fn stamp(&self, group: GroupId, first: u64, last: u64, stage: fn(&mut LeaderStamps) -> &mut Option<Instant>) {
        self.stamp_at(group, first, last, Instant::now(), stage);
    }

    /// [`StageClock::stamp`] with a time taken earlier.
    pub fn stamp_at(&self, group: GroupId, first: u64, last: u64, at: Instant, stage: fn(&mut LeaderStamps) -> &mut Option<Instant>) {
        if first > last {
            return;
        }
        let mut book = self.book();
        for (_, stamps) in book.range_mut((group, first)..=(group, last)) {
            stage(stamps).get_or_insert(at);
        }
    }

    /// The stamps of `(group, index)`, removed from the book; `None` if it was not traced.
    pub fn take(&self, group: GroupId, index: u64) -> Option<LeaderStamps> {
        self.book().remove(&(group, index))
    }

    /// Reports a follower's round for `group`: the appends ending at `index` stepped at
    /// `stepped`, written at `written`, fsynced at `synced`, answered now.
    pub fn follower_round(&self, group: GroupId, index: u64, stepped: Instant, written: Instant, synced: Instant) {
        let replied = Instant::now();
        let micros = |from: Instant, to: Instant| to.saturating_duration_since(from).as_micros() as u64;
        tracing::info!(
            target: "odradek_stages",
            role = "follower",
            group,
            index,
            append_us = micros(stepped, written),
            fsync_us = micros(written, synced),
            reply_us = micros(synced, replied),
            total_us = micros(stepped, replied),
            "stages"
        );
    }
}
