//! The checks over what group members were returned: C2 (no group skip), C3 (resume position)
//! and C6 (re-delivery counts). See the parent module for what each reads and why it is sound.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Key, Offset, Value};

use super::super::index::{equal_range, runs, Index, Outcome};
use super::super::verdict::{Anomaly, AnomalyKind, GroupStats, Report};
use super::index::GroupIndex;

/// A commit that may have moved a register past an offset (C2): ok, or indeterminate.
struct Candidate {
    offset: Offset,
    invoke: u64,
    /// Completion of an ok commit; None for an indeterminate one.
    ok_complete: Option<u64>,
    /// A simple or admin commit (no member id): it may move the offset without any poll.
    admin: bool,
}

/// The values VO(key) holds at `offset`.
fn values_at(index: &Index, key: Key, offset: Offset) -> Vec<Value> {
    let mut values: Vec<Value> = equal_range(&index.vo, |e| (e.key, e.offset).cmp(&(key, offset))).iter().map(|e| e.value).collect();
    values.dedup();
    values
}

/// C2: for each (group, key), every offset of VO(key) that a commit moved past was returned to a
/// member holding the key before the last commit that can have been the first to move past it
/// was invoked.
pub(super) fn check_group_skips(groups: &GroupIndex, index: &Index, report: &mut Report) {
    let mut candidates: BTreeMap<(&str, Key), Vec<Candidate>> = BTreeMap::new();
    for c in groups.commits.iter().filter(|c| c.outcome != Outcome::Fail) {
        for (&key, &offset) in &c.commit.offsets {
            let ok_complete = if c.outcome == Outcome::Ok { c.complete } else { None };
            let candidate = Candidate { offset, invoke: c.invoke, ok_complete, admin: c.commit.member.is_none() };
            candidates.entry((&c.commit.group, key)).or_default().push(candidate);
        }
    }
    for ((group, key), mut candidates) in candidates {
        let Some(vo) = index.vo_offsets.get(&key) else { continue };
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.offset));
        let floor = groups.reset_floor.get(&(group, key)).copied().unwrap_or(0);
        let deliveries = equal_range(&groups.deliveries, |d| (d.group, d.key).cmp(&(group, key)));
        // Candidates with offset > o, as o descends: their invokes, admin invokes, and the
        // earliest ok completion E. The first commit to apply was invoked before E.
        let (mut invokes, mut admin_invokes) = (BTreeSet::new(), BTreeSet::new());
        let mut ok_complete_min = u64::MAX;
        let mut next = 0;
        for &offset in vo.iter().rev() {
            while let Some(c) = candidates.get(next).filter(|c| c.offset > offset) {
                invokes.insert(c.invoke);
                if c.admin {
                    admin_invokes.insert(c.invoke);
                }
                ok_complete_min = ok_complete_min.min(c.ok_complete.unwrap_or(u64::MAX));
                next += 1;
            }
            if offset < floor || admin_invokes.range(..ok_complete_min).next().is_some() {
                continue;
            }
            let Some(&latest) = invokes.range(..ok_complete_min).next_back() else { continue };
            // Retention may have deleted the offset before the first mover was invoked: then a
            // member's position went past it without a poll (its reset policy).
            if offset < index.log_start_before(key, latest) {
                continue;
            }
            let at = equal_range(deliveries, |d| d.offset.cmp(&offset));
            let first_held = at.iter().filter(|d| d.held).map(|d| d.complete).min();
            if first_held.is_some_and(|p| p < latest) {
                continue;
            }
            let detail = match first_held {
                Some(p) => format!(
                    "group {group} committed past offset {offset} by op {latest}; a member holding the key first polled it at op {p}"
                ),
                None => format!("group {group} committed past offset {offset} by op {latest}; no member holding the key ever polled it"),
            };
            let anomaly = Anomaly::new(AnomalyKind::GroupSkip, true).group(group).key(key).offsets([offset]);
            report.push(anomaly.values(values_at(index, key, offset)).ops([latest].into_iter().chain(first_held)).detail(detail));
        }
    }
}

/// Most skipped offsets named in one C3 anomaly (the detail gives the count).
const RESUME_SKIPPED_LISTED_MAX: usize = 8;

/// C3: a member's first poll of a newly assigned key starts at the smallest known offset at or
/// after its start position. Later fails; earlier is counted and reported.
pub(super) fn check_resumes(groups: &GroupIndex, index: &Index, stats: &mut GroupStats, report: &mut Report) {
    for a in &groups.assignments {
        let Some((poll, first)) = a.first_poll else { continue };
        stats.resumes_checked += 1;
        let start = a.start.offset;
        let anomaly = |kind, fatal| Anomaly::new(kind, fatal).group(a.group).key(a.key).ops([a.op, poll]);
        if first < start {
            stats.resumes_earlier += 1;
            let detail =
                format!("process {} started at offset {start} ({:?}) and was first returned offset {first}", a.process, a.start.from);
            report.push(anomaly(AnomalyKind::ResumeEarlier, false).offsets([start, first]).detail(detail));
        } else if first > start {
            let vo = index.vo_offsets.get(&a.key).map_or(&[][..], Vec::as_slice);
            // Offsets retention had deleted before the poll completed are no skip (the member's
            // reset policy moved its position to the log start).
            let from = start.max(index.log_start_before(a.key, poll)).min(first);
            let skipped = &vo[vo.partition_point(|&o| o < from)..vo.partition_point(|&o| o < first)];
            if skipped.is_empty() {
                continue;
            }
            let listed = &skipped[..skipped.len().min(RESUME_SKIPPED_LISTED_MAX)];
            let values = listed.iter().flat_map(|&o| values_at(index, a.key, o));
            let detail = format!(
                "process {} started at offset {start} ({:?}); its first poll began at {first}, skipping {} known offsets",
                a.process,
                a.start.from,
                skipped.len()
            );
            let offsets = [start].into_iter().chain(listed.iter().copied()).chain([first]);
            report.push(anomaly(AnomalyKind::ResumeSkip, true).offsets(offsets).values(values).detail(detail));
        }
    }
}

/// C6: per group, how many distinct values were returned to its members more than once.
pub(super) fn count_redeliveries(groups: &GroupIndex, stats: &mut GroupStats, report: &mut Report) {
    let mut pairs: Vec<(&str, Value)> = groups.deliveries.iter().map(|d| (d.group, d.value)).collect();
    pairs.sort_unstable();
    for run in runs(&pairs, |p| p.0) {
        let (mut values, mut deliveries) = (0u64, run.len() as u64);
        let mut redelivered: Vec<Value> = Vec::new();
        for same in runs(run, |p| p.1) {
            values += 1;
            if same.len() > 1 {
                redelivered.push(same[0].1);
            }
        }
        stats.values_delivered += values;
        stats.values_redelivered += redelivered.len() as u64;
        deliveries -= values;
        if !redelivered.is_empty() {
            let detail = format!(
                "{} of {values} values were delivered more than once ({deliveries} extra deliveries); examples listed",
                redelivered.len()
            );
            report.push(Anomaly::new(AnomalyKind::Redelivery, false).group(run[0].0).values(redelivered).detail(detail));
        }
    }
}
