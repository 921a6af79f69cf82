//! Generated consumer-group histories of the in-memory group model: valid runs must pass with
//! only the report-only group anomalies; each planted bug must fail with its C anomaly.

use odradek_jepsen::checker::{check, AnomalyKind, CheckOptions, Verdict};
use odradek_jepsen::history::{GroupProtocol, History};
use odradek_jepsen::model::groups::{generate_groups, GroupBug, GroupModelConfig};

const SEEDS: std::ops::Range<u64> = 0..8;

/// What a valid group run may report (never fail): re-deliveries after crashes, zombies' overlaps.
const REPORTED_IN_VALID_RUNS: &[AnomalyKind] = &[AnomalyKind::Redelivery, AnomalyKind::ZombieOwnership];

fn configs() -> Vec<GroupModelConfig> {
    let base = GroupModelConfig::default();
    vec![
        base.clone(),
        GroupModelConfig { protocol: GroupProtocol::Classic, ..base.clone() },
        GroupModelConfig { groups: 1, members_per_group: 5, keys: 3, crash_probability: 0.03, ..base.clone() },
        GroupModelConfig { auto_commit: false, fence_probability: 0.0, commit_info_probability: 0.1, ..base.clone() },
        GroupModelConfig { protocol: GroupProtocol::Classic, fence_probability: 0.02, poll_records_max: 1, ..base },
    ]
}

fn check_valid(verdict: &Verdict) -> Result<(), String> {
    let unexpected: Vec<String> = verdict.counts.keys().filter(|k| !REPORTED_IN_VALID_RUNS.contains(k)).map(|k| k.to_string()).collect();
    if verdict.valid && unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected {unexpected:?}:\n{verdict}"))
    }
}

#[test]
fn valid_group_histories_pass() {
    for config in configs() {
        for seed in SEEDS {
            let generated = generate_groups(&GroupModelConfig { seed, ..config.clone() });
            let verdict = check(&generated.history, &CheckOptions::default());
            if let Err(e) = check_valid(&verdict) {
                panic!("seed {seed} {config:?}: {e}");
            }
            let g = &verdict.groups;
            assert!(g.commits_ok > 0 && g.rebalances_ok > 0 && g.registers_checked > 0 && g.resumes_checked > 0, "{verdict}");
            assert_eq!(g.registers_unknown, 0);
            assert!(verdict.stats.final_drain && verdict.stats.ops as usize >= config.ops_target);
        }
    }
}

#[test]
fn crashes_and_zombies_are_exercised() {
    let generated = generate_groups(&GroupModelConfig { seed: 3, ops_target: 20_000, ..GroupModelConfig::default() });
    let verdict = check(&generated.history, &CheckOptions::default());
    check_valid(&verdict).unwrap();
    assert!(verdict.count(AnomalyKind::Redelivery).reported > 0, "{verdict}");
    assert!(verdict.count(AnomalyKind::ZombieOwnership).reported > 0, "{verdict}");
    assert!(verdict.groups.commits_fail > 0 && verdict.groups.commits_indeterminate > 0 && verdict.groups.auto_commits > 0);
}

#[test]
fn group_generation_is_deterministic_and_round_trips() {
    let config = GroupModelConfig { seed: 42, ..GroupModelConfig::default() };
    let history = generate_groups(&config).history;
    assert_eq!(history, generate_groups(&config).history);
    let mut bytes = Vec::new();
    history.write_json_lines(&mut bytes).unwrap();
    assert_eq!(History::read_json_lines(&bytes[..]).unwrap(), history);
}

#[test]
fn planted_group_bugs_fail_with_their_anomaly() {
    let table = [
        (GroupBug::StaleCommitAccepted, AnomalyKind::StaleCommit),
        (GroupBug::AutoCommitCurrentPoll, AnomalyKind::AutoCommitUnpolled),
        (GroupBug::FailedCommitApplied, AnomalyKind::CommitNonlinearizable),
        (GroupBug::DoubleAssignment, AnomalyKind::DoubleOwnership),
        (GroupBug::ResumeSkip, AnomalyKind::ResumeSkip),
        (GroupBug::CommitPastUnpolled, AnomalyKind::GroupSkip),
    ];
    for protocol in [GroupProtocol::Consumer, GroupProtocol::Classic] {
        for (bug, kind) in table {
            for seed in SEEDS {
                let config = GroupModelConfig { seed, protocol, bug: Some(bug), ..GroupModelConfig::default() };
                let generated = generate_groups(&config);
                assert!(generated.bug_planted, "{bug:?} {protocol:?} seed {seed} was never planted");
                let verdict = check(&generated.history, &CheckOptions::default());
                assert!(!verdict.valid && verdict.has_fatal(kind), "{bug:?} {protocol:?} seed {seed}: expected {kind}, got:\n{verdict}");
            }
        }
    }
}
