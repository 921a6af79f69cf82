//! C9: offset deletions (Kafka's OffsetDelete) refused while the group is subscribed, and
//! holding once acknowledged (the module doc of [`super`] states both checks and why they are
//! sound). Cost: one pass over the commits, then per deleted key a scan of that (group, key)'s
//! commits and reads.

use std::collections::BTreeMap;

use super::super::index::Outcome;
use super::super::verdict::{Anomaly, AnomalyKind, Report};
use super::index::GroupIndex;
use crate::history::Key;

/// Both C9 checks over every ok deletion.
pub(super) fn check_offset_deletes(groups: &GroupIndex, report: &mut Report) {
    if groups.deletes.is_empty() {
        return;
    }
    // Per (group, member, epoch): the earliest completion and the latest invoke of its ok commits.
    let mut spans: BTreeMap<(&str, &str, u64), (u64, u64)> = BTreeMap::new();
    for c in groups.commits.iter().filter(|c| c.outcome == Outcome::Ok) {
        let (Some(member), Some(epoch)) = (c.commit.member.as_deref(), c.commit.epoch) else { continue };
        let complete = c.complete.expect("ok commits complete");
        let span = spans.entry((c.commit.group.as_str(), member, epoch)).or_insert((complete, c.invoke));
        span.0 = span.0.min(complete);
        span.1 = span.1.max(c.invoke);
    }
    for d in &groups.deletes {
        let Some(complete) = d.complete else { continue };
        for &key in &d.deleted {
            subscribed_throughout(groups, &spans, d.group, key, d.invoke, complete, report);
            returned_after(groups, d.group, key, d.invoke, complete, report);
        }
    }
}

/// C9 (a): a member covering `key` was in the group, at one epoch, before `invoke` and after
/// `complete`.
fn subscribed_throughout(
    groups: &GroupIndex,
    spans: &BTreeMap<(&str, &str, u64), (u64, u64)>,
    group: &str,
    key: Key,
    invoke: u64,
    complete: u64,
    report: &mut Report,
) {
    let witness = spans.iter().find(|((g, member, _), (first_complete, last_invoke))| {
        *g == group
            && *first_complete < invoke
            && *last_invoke > complete
            && groups.member_keys.get(&(*g, *member)).is_some_and(|keys| keys.contains(&key))
    });
    if let Some(((_, member, epoch), (before, after))) = witness {
        let detail = format!(
            "an offset deletion of key {key} was acknowledged as done while member {member} (subscribed to it) was in the group at \
             epoch {epoch}: it committed at that epoch before (completed at op {before}) and after (invoked at op {after}); \
             GROUP_SUBSCRIBED_TO_TOPIC was due"
        );
        let anomaly = Anomaly::new(AnomalyKind::OffsetDeletedWhileSubscribed, true).group(group).key(key);
        report.push(anomaly.ops([*before, invoke, complete, *after]).detail(detail));
    }
}

/// C9 (b): an ok fetch after the deletion returned an offset no later commit explains.
fn returned_after(groups: &GroupIndex, group: &str, key: Key, invoke: u64, complete: u64, report: &mut Report) {
    let explained_before = |fetch_complete: u64| {
        groups.commits.iter().any(|c| {
            c.outcome != Outcome::Fail
                && c.commit.group == group
                && c.commit.offsets.contains_key(&key)
                && c.invoke < fetch_complete
                && c.complete.is_none_or(|done| done > invoke)
        })
    };
    let read = groups.reads.iter().find(|r| {
        !r.from_start && r.group == group && r.key == key && r.invoke > complete && r.value.is_some() && !explained_before(r.complete)
    });
    if let Some(r) = read {
        let offset = r.value.expect("filtered");
        let detail = format!(
            "fetch-committed returned offset {offset} for key {key} after an offset deletion of it was acknowledged (op {complete}), \
             with no commit of the key that can have taken effect since"
        );
        let anomaly = Anomaly::new(AnomalyKind::DeletedOffsetReturned, true).group(group).key(key).offsets([offset]);
        report.push(anomaly.ops([invoke, complete, r.invoke, r.complete]).detail(detail));
    }
}
