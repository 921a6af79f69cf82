//! P1, P3 and P4 over a server-side log dump (idempotent producer invariants).

use crate::history::{Key, Offset};

use super::index::runs;
use super::verdict::{Anomaly, AnomalyKind, Report};
use super::LogRecord;

/// (pid, epoch, partition, seq, offset) of one idempotent record.
type Row = (u64, u64, Key, u64, Offset);

/// P1: at most one record per (pid, epoch, partition, seq). P3: per (pid, epoch, partition),
/// sequences increase by exactly one in log order. P4: per (pid, partition), epochs never
/// decrease in log order.
pub(crate) fn check_log_dump(records: &[LogRecord], report: &mut Report) {
    let mut rows: Vec<Row> = records.iter().filter_map(|r| r.producer.map(|p| (p.pid, p.epoch, r.partition, p.seq, r.offset))).collect();
    rows.sort_unstable();
    for run in runs(&rows, |r| (r.0, r.1, r.2, r.3)) {
        if run.len() > 1 {
            let (pid, epoch, partition, seq, _) = run[0];
            let anomaly = Anomaly::new(AnomalyKind::DuplicateRecord, true).key(partition).offsets(run.iter().map(|r| r.4));
            report.push(anomaly.detail(format!("pid {pid} epoch {epoch} seq {seq} appended {} times", run.len())));
        }
    }
    // Log order within a partition: by offset.
    rows.sort_unstable_by_key(|&(pid, epoch, partition, seq, offset)| (pid, epoch, partition, offset, seq));
    for run in runs(&rows, |r| (r.0, r.1, r.2)) {
        for pair in run.windows(2) {
            let ((pid, epoch, partition, seq1, o1), (_, _, _, seq2, o2)) = (pair[0], pair[1]);
            // An equal sequence is P1's duplicate; anything else but +1 is a gap or a reorder.
            if seq2 != seq1 + 1 && seq2 != seq1 {
                let anomaly = Anomaly::new(AnomalyKind::SequenceGap, true).key(partition).offsets([o1, o2]);
                report.push(anomaly.detail(format!("pid {pid} epoch {epoch}: seq {seq1} then {seq2}")));
            }
        }
    }
    rows.sort_unstable_by_key(|&(pid, epoch, partition, _, offset)| (pid, partition, offset, epoch));
    for run in runs(&rows, |r| (r.0, r.2)) {
        for pair in run.windows(2) {
            let ((pid, e1, partition, _, o1), (_, e2, _, _, o2)) = (pair[0], pair[1]);
            if e2 < e1 {
                let anomaly = Anomaly::new(AnomalyKind::EpochRegression, true).key(partition).offsets([o1, o2]);
                report.push(anomaly.detail(format!("pid {pid}: epoch {e1} then {e2} (a fenced producer appended)")));
            }
        }
    }
}
