//! C7, ownership: no key is owned by two members at once, except by a zombie (a member the
//! coordinator had fenced without its knowing). See the parent module for the soundness argument.

use std::collections::BTreeMap;

use crate::history::Process;

use super::super::index::runs;
use super::super::verdict::{Anomaly, AnomalyKind, Report};
use super::index::{EndKind, GenerationAssignment, GroupIndex, Interval, Liveness};

/// Who holds an assignment: the member id, or the process when the recorder gave none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Holder<'h> {
    Member(&'h str),
    Process(Process),
}

/// Classic protocol: in one generation, the members' assignments are disjoint. Members sharing
/// a static instance id are a replacement (the older one is fenced): reported, not failed.
pub(super) fn check_generations(groups: &GroupIndex, report: &mut Report) {
    // The first ok rebalance of each member at each generation is the assignment it was given.
    let mut firsts: BTreeMap<(&str, u64, Holder), &GenerationAssignment> = BTreeMap::new();
    for g in &groups.generations {
        let holder = g.member.map_or(Holder::Process(g.process), Holder::Member);
        firsts.entry((g.group, g.generation, holder)).or_insert(g);
    }
    let firsts: Vec<(&str, u64, &GenerationAssignment)> =
        firsts.into_iter().map(|((group, generation, _), g)| (group, generation, g)).collect();
    for run in runs(&firsts, |f| (f.0, f.1)) {
        for (i, &(group, generation, a)) in run.iter().enumerate() {
            for &(_, _, b) in &run[i + 1..] {
                if a.process == b.process {
                    continue;
                }
                let shared: Vec<u64> = a.owned.iter().filter(|k| b.owned.contains(k)).copied().collect();
                if shared.is_empty() {
                    continue;
                }
                let replaced = a.instance.is_some() && a.instance == b.instance;
                let (kind, fatal, why) = if replaced {
                    (AnomalyKind::ZombieOwnership, false, "static instance replaced; the older member is fenced")
                } else {
                    (AnomalyKind::DoubleOwnership, true, "one generation gives a key to two members")
                };
                let detail = format!("generation {generation}: processes {} and {} both own keys {shared:?} ({why})", a.process, b.process);
                for key in shared {
                    report.push(Anomaly::new(kind, fatal).group(group).key(key).ops([a.op, b.op]).detail(detail.clone()));
                }
            }
        }
    }
}

/// An op of `a`'s process invoked after `after` that shows its member was still a member (and
/// had not been fenced since it was assigned the key): see the parent module.
fn still_member<'h>(groups: &GroupIndex<'h>, a: &Interval<'h>, after: u64) -> Option<Liveness<'h>> {
    let member = a.member?;
    let lives = groups.liveness.get(&a.process)?;
    let from = lives.partition_point(|l| l.invoke <= after);
    let live = *lives[from..].iter().find(|l| l.member == member)?;
    let fences = groups.fences.get(&a.process).map_or(&[][..], Vec::as_slice);
    let fenced = fences[fences.partition_point(|&f| f <= a.assign_invoke)..].first().is_some_and(|&f| f <= live.complete);
    (!fenced).then_some(live)
}

/// Both protocols: two members' ownership intervals of a key overlap only if the earlier owner
/// was a zombie. An overlap fails when the earlier owner's process later showed it was still the
/// same, unfenced member; otherwise it is reported as a zombie overlap.
pub(super) fn check_intervals(groups: &GroupIndex, report: &mut Report) {
    let mut order: Vec<&Interval> = groups.intervals.iter().collect();
    order.sort_by_key(|i| (i.group, i.key, i.assign_complete));
    for run in runs(&order, |i| (i.group, i.key)) {
        let mut active: Vec<&Interval> = Vec::new();
        for &b in run {
            active.retain(|a| a.end_invoke > b.assign_complete);
            for &a in active.iter().filter(|a| a.process != b.process) {
                let overlap = format!(
                    "process {} (member {}) owned the key from op {} until op {} ({:?}); process {} was assigned it at op {}",
                    a.process,
                    a.member.unwrap_or("?"),
                    a.assign_complete,
                    if a.end_invoke == u64::MAX { "the end".to_string() } else { a.end_invoke.to_string() },
                    a.end_kind,
                    b.process,
                    b.assign_complete
                );
                let anomaly = match still_member(groups, a, b.assign_complete) {
                    Some(live) => Anomaly::new(AnomalyKind::DoubleOwnership, true)
                        .ops([a.assign_complete, b.assign_complete, live.invoke])
                        .detail(format!("{overlap}; op {} shows the first owner was still an unfenced member", live.invoke)),
                    None => {
                        let why = match a.end_kind {
                            EndKind::Lost => "the first owner lost it (fenced)",
                            _ => "no op shows the first owner was still an unfenced member",
                        };
                        Anomaly::new(AnomalyKind::ZombieOwnership, false)
                            .ops([a.assign_complete, b.assign_complete])
                            .detail(format!("{overlap}; {why}"))
                    }
                };
                report.push(anomaly.group(a.group).key(a.key));
            }
            active.push(b);
        }
    }
}
