//! Generated histories of the in-memory model log: valid runs must pass; each planted bug must
//! fail with its anomaly.

use odradek_jepsen::checker::{check, AnomalyKind, CheckOptions, Verdict};
use odradek_jepsen::history::{Acks, History};
use odradek_jepsen::model::{generate, Bug, Generated, ModelConfig};

const SEEDS: std::ops::Range<u64> = 0..8;

fn check_generated(generated: &Generated) -> Verdict {
    let options = CheckOptions { log_dump: Some(generated.log_dump.clone()), ..CheckOptions::default() };
    check(&generated.history, &options)
}

fn configs() -> Vec<ModelConfig> {
    let base = ModelConfig::default();
    vec![
        base.clone(),
        ModelConfig { acks: Acks::One, ..base.clone() },
        ModelConfig { acks: Acks::Zero, idempotent: false, ..base.clone() },
        ModelConfig { idempotent: false, keys: 1, producers: 6, consumers: 1, ..base.clone() },
        ModelConfig { batch_values_max: 1, poll_records_max: 1, info_probability: 0.1, send_fail_probability: 0.2, ..base },
    ]
}

#[test]
fn valid_model_histories_pass() {
    for config in configs() {
        for seed in SEEDS {
            let generated = generate(&ModelConfig { seed, ..config.clone() });
            let verdict = check_generated(&generated);
            assert!(verdict.valid && verdict.counts.is_empty(), "seed {seed} {config:?}:\n{verdict}");
            assert!(verdict.stats.final_drain && verdict.stats.values_unseen == 0 && verdict.stats.polls_ok > 0);
            assert!(verdict.stats.ops as usize >= config.ops_target);
        }
    }
}

#[test]
fn generation_is_deterministic_per_seed() {
    let config = ModelConfig { seed: 42, ..ModelConfig::default() };
    assert_eq!(generate(&config).history, generate(&config).history);
    assert_ne!(generate(&config).history, generate(&ModelConfig { seed: 43, ..config }).history);
}

#[test]
fn generated_history_round_trips_through_json_lines() {
    let generated = generate(&ModelConfig { seed: 7, bug: Some(Bug::DropAckedWrite), ..ModelConfig::default() });
    let mut bytes = Vec::new();
    generated.history.write_json_lines(&mut bytes).unwrap();
    let parsed = History::read_json_lines(&bytes[..]).unwrap();
    assert_eq!(parsed, generated.history);
    assert_eq!(
        check_generated(&generated),
        check(&parsed, &CheckOptions { log_dump: Some(generated.log_dump), ..CheckOptions::default() })
    );
}

#[test]
fn planted_bugs_fail_with_their_anomaly() {
    let table = [
        (Bug::DropAckedWrite, AnomalyKind::LostWrite),
        (Bug::DuplicateAppend, AnomalyKind::Duplicate),
        (Bug::DuplicateAppend, AnomalyKind::DuplicateRecord),
        (Bug::ReorderRecords, AnomalyKind::AckOffsetMismatch),
        (Bug::SkipOnPoll, AnomalyKind::PollSkip),
        (Bug::StaleHw, AnomalyKind::StaleHw),
        (Bug::AppendFailedWrite, AnomalyKind::G1a),
    ];
    for (bug, kind) in table {
        for seed in SEEDS {
            let generated = generate(&ModelConfig { seed, bug: Some(bug), ..ModelConfig::default() });
            assert!(generated.bug_planted, "{bug:?} seed {seed} was never planted");
            let verdict = check_generated(&generated);
            assert!(!verdict.valid && verdict.has_fatal(kind), "{bug:?} seed {seed}: expected {kind}, got:\n{verdict}");
        }
    }
}
