//! A history read as intervals of time: each client op from its invoke to its completion
//! ([`completed_ops`]) and each fault from its nemesis `start` to its `stop`
//! ([`fault_windows`]). The report's summary and plots are drawn from these.
//!
//! Computed from the history alone (no clock), in the history's order.

use std::collections::BTreeMap;

use crate::history::{History, OpF, OpType, OpValue, PROCESS_NEMESIS};

/// One fault window: from its `start` op to its matching `stop` (or the end of the history).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    pub fault: String,
    pub details: String,
    pub start_s: f64,
    /// None if the history ends with the fault still active.
    pub stop_s: Option<f64>,
}

/// One completed client op: what it was, how it ended, when it was invoked and how long it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompletedOp {
    pub f: OpF,
    pub kind: OpType,
    pub invoke_s: f64,
    pub complete_s: f64,
}

/// A history time (ns since the run's start) in seconds.
pub fn seconds(time_ns: u64) -> f64 {
    time_ns as f64 / 1e9
}

/// Pairs every nemesis `start` with the next `stop` of the same fault and details.
pub fn fault_windows(history: &History) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for op in history.ops() {
        let OpValue::Fault(fault) = &op.value else { continue };
        let details = fault.details.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        match op.f {
            OpF::Start => {
                windows.push(FaultWindow { fault: fault.fault.clone(), details, start_s: seconds(op.time_ns), stop_s: None });
            }
            OpF::Stop => {
                let open = windows.iter_mut().find(|w| w.stop_s.is_none() && w.fault == fault.fault && w.details == details);
                if let Some(window) = open {
                    window.stop_s = Some(seconds(op.time_ns));
                }
            }
            _ => {}
        }
    }
    windows
}

/// Every client op that completed (ok, fail or info), in completion order.
pub fn completed_ops(history: &History) -> Vec<CompletedOp> {
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    let mut done = Vec::new();
    for op in history.ops() {
        if op.process == PROCESS_NEMESIS || op.f == OpF::Crash {
            continue;
        }
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, op.time_ns);
            }
            kind => {
                if let Some(invoke_ns) = open.remove(&op.process) {
                    done.push(CompletedOp { f: op.f, kind, invoke_s: seconds(invoke_ns), complete_s: seconds(op.time_ns) });
                }
            }
        }
    }
    done
}
