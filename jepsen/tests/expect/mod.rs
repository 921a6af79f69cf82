//! What a checker test case expects of the verdict, shared by the anomaly catalogues
//! (`tests/anomalies.rs` for the log and producer kinds, `tests/groups.rs` for the group kinds).

use odradek_jepsen::checker::{AnomalyKind, Verdict};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// The kind is found at least once and fails the verdict.
    Fatal(AnomalyKind),
    /// The kind is found, reported only; the verdict stays valid.
    Reported(AnomalyKind),
    /// Valid, with no anomaly of any kind.
    Clean,
}

impl Expect {
    /// Whether `verdict` is what this expectation asks for.
    pub fn met_by(self, verdict: &Verdict) -> bool {
        match self {
            Expect::Fatal(kind) => !verdict.valid && verdict.count(kind).fatal > 0,
            Expect::Reported(kind) => verdict.valid && verdict.count(kind).reported > 0,
            Expect::Clean => verdict.valid && verdict.counts.is_empty(),
        }
    }
}
