//! The report's plots, as SVG (plotters' SVG backend: no system libraries):
//! * latency: one point per completed client op at its invoke time, latency on a log scale, a
//!   colour per (op, outcome), fault windows shaded;
//! * throughput: completed ops per second per (op, outcome), fault windows shaded.
//!
//! Both mark consumer-group rebalances (the completion of each ok `rebalance` op) with a thin
//! vertical line, so a latency spike or a dip in polls can be matched with the rebalance (and
//! the fault) around it.
//!
//! Bounded: at most [`PLOT_POINTS_MAX`] points per plot (evenly thinned beyond that).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::history::{History, OpF, OpType};
use crate::intervals::{completed_ops, fault_windows, seconds, CompletedOp, FaultWindow};

/// Most points drawn in one plot.
pub const PLOT_POINTS_MAX: usize = 20_000;
const PLOT_SIZE: (u32, u32) = (1400, 700);
/// Lowest latency shown (the log scale needs a positive floor).
const LATENCY_MS_MIN: f64 = 0.05;

/// The series of an op kind and outcome, in drawing order.
const SERIES: &[(OpF, OpType, RGBColor)] = &[
    (OpF::Send, OpType::Ok, RGBColor(31, 119, 180)),
    (OpF::Poll, OpType::Ok, RGBColor(44, 160, 44)),
    (OpF::Send, OpType::Fail, RGBColor(255, 127, 14)),
    (OpF::Poll, OpType::Fail, RGBColor(188, 189, 34)),
    (OpF::Send, OpType::Info, RGBColor(214, 39, 40)),
    (OpF::Poll, OpType::Info, RGBColor(148, 103, 189)),
    (OpF::Rewind, OpType::Ok, RGBColor(127, 127, 127)),
    (OpF::Assign, OpType::Ok, RGBColor(23, 190, 207)),
    (OpF::Commit, OpType::Ok, RGBColor(140, 86, 75)),
    (OpF::Commit, OpType::Fail, RGBColor(227, 119, 194)),
    (OpF::FetchCommitted, OpType::Ok, RGBColor(0, 0, 0)),
];

/// The colour of the rebalance markers.
const REBALANCE_COLOR: RGBColor = RGBColor(120, 120, 120);

/// Seconds at which an ok `rebalance` op completed.
fn rebalance_times(history: &History) -> Vec<f64> {
    history.ops().iter().filter(|op| op.f == OpF::Rebalance && op.kind == OpType::Ok).map(|op| seconds(op.time_ns)).collect()
}

/// A thin vertical line per rebalance over `[y_min, y_max]`, one legend entry.
fn mark_rebalances<Y>(chart: &mut Chart<'_, Y>, history: &History, (y_min, y_max): (f64, f64)) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let times = rebalance_times(history);
    if times.is_empty() {
        return Ok(());
    }
    let lines = thinned(&times).into_iter().map(|t| PathElement::new([(t, y_min), (t, y_max)], REBALANCE_COLOR.mix(0.5).stroke_width(1)));
    chart
        .draw_series(lines)
        .map_err(|e| e.to_string())?
        .label(format!("rebalance ({})", times.len()))
        .legend(|(x, y)| PathElement::new([(x + 6, y - 6), (x + 6, y + 6)], REBALANCE_COLOR.stroke_width(2)));
    Ok(())
}

fn series_name(f: OpF, kind: OpType) -> String {
    format!("{f:?} {kind:?}").to_lowercase()
}

/// A colour per fault name (kill, pause and partitions stay distinguishable).
fn fault_color(fault: &str) -> RGBColor {
    match fault.split(' ').next().unwrap_or("") {
        "F-P1" => RGBColor(214, 39, 40),
        "F-P2" => RGBColor(255, 187, 0),
        _ => RGBColor(100, 100, 255),
    }
}

fn thinned<T: Copy>(items: &[T]) -> Vec<T> {
    let stride = items.len().div_ceil(PLOT_POINTS_MAX).max(1);
    items.iter().step_by(stride).copied().collect()
}

fn time_max(history: &History) -> f64 {
    history.ops().last().map_or(1.0, |op| seconds(op.time_ns)).max(1.0)
}

type Chart<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// Shades each fault window over the y range `[y_min, y_max]`, one legend entry per fault name.
fn shade_faults<Y>(chart: &mut Chart<'_, Y>, windows: &[FaultWindow], end_s: f64, (y_min, y_max): (f64, f64)) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let mut labelled = std::collections::BTreeSet::new();
    for window in windows {
        let color = fault_color(&window.fault);
        let rectangle = Rectangle::new([(window.start_s, y_min), (window.stop_s.unwrap_or(end_s), y_max)], color.mix(0.15).filled());
        let drawn = chart.draw_series(std::iter::once(rectangle)).map_err(|e| e.to_string())?;
        if labelled.insert(window.fault.clone()) {
            drawn.label(window.fault.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.3).filled()));
        }
    }
    Ok(())
}

/// Latency over time per op type, fault windows shaded.
pub fn latency(history: &History, path: &Path) -> Result<(), String> {
    let ops = completed_ops(history);
    let end_s = time_max(history);
    let latency_ms = |op: &CompletedOp| ((op.complete_s - op.invoke_s) * 1e3).max(LATENCY_MS_MIN);
    let y_max = ops.iter().map(latency_ms).fold(10.0_f64, f64::max) * 1.5;
    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("odradek-jepsen: op latency (log scale) over time, fault windows shaded", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end_s, (LATENCY_MS_MIN..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("time since start (s)").y_desc("latency (ms)").draw().map_err(|e| e.to_string())?;
    shade_faults(&mut chart, &fault_windows(history), end_s, (LATENCY_MS_MIN, y_max))?;
    mark_rebalances(&mut chart, history, (LATENCY_MS_MIN, y_max))?;
    for &(f, kind, color) in SERIES {
        let points: Vec<(f64, f64)> =
            ops.iter().filter(|op| op.f == f && op.kind == kind).map(|op| (op.invoke_s, latency_ms(op))).collect();
        if points.is_empty() {
            continue;
        }
        let label = format!("{} ({})", series_name(f, kind), points.len());
        chart
            .draw_series(thinned(&points).into_iter().map(|p| Circle::new(p, 2, color.filled())))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Completed ops per second over time per op type and outcome, fault windows shaded.
pub fn throughput(history: &History, path: &Path) -> Result<(), String> {
    let ops = completed_ops(history);
    let end_s = time_max(history);
    let bucket_count = end_s.ceil() as usize + 1;
    let mut buckets: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for op in &ops {
        if let Some(series) = SERIES.iter().position(|&(f, kind, _)| f == op.f && kind == op.kind) {
            let counts = buckets.entry((series, 0)).or_insert_with(|| vec![0.0; bucket_count]);
            counts[(op.complete_s as usize).min(bucket_count - 1)] += 1.0;
        }
    }
    let y_max = buckets.values().flatten().fold(1.0_f64, |a, &b| a.max(b)) * 1.2;
    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("odradek-jepsen: completed ops per second, fault windows shaded", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end_s, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("time since start (s)").y_desc("ops / s").draw().map_err(|e| e.to_string())?;
    shade_faults(&mut chart, &fault_windows(history), end_s, (0.0, y_max))?;
    mark_rebalances(&mut chart, history, (0.0, y_max))?;
    for ((series, _), counts) in &buckets {
        let (f, kind, color) = SERIES[*series];
        let line = LineSeries::new(counts.iter().enumerate().map(|(s, &c)| (s as f64 + 0.5, c)), color.stroke_width(2));
        chart
            .draw_series(line)
            .map_err(|e| e.to_string())?
            .label(series_name(f, kind))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
