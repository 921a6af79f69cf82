//! BUGGIFY sites (CHECKLISTS F-B1, F-B4, F-B5): places in the consensus and server code that,
//! in a simulation run with buggify switched on, now and then take a legal but unusual path —
//! tiny segments, extra delays before an fsync or a reply, a spurious retriable error — so the
//! simulator explores schedules a healthy run almost never reaches (FoundationDB's BUGGIFY).
//!
//! Only `--cfg madsim` builds have them: there [`fires`] draws from the simulation's seeded
//! random generator and is false unless the run called `madsim::buggify::enable()`. In every
//! other build [`fires`] is the constant `false` and the sites compile away.

use std::ops::Range;
use std::time::Duration;

/// Whether a buggify site fires now, with probability `probability` when buggify is on.
#[inline]
pub fn fires(probability: f64) -> bool {
    #[cfg(madsim)]
    return madsim::buggify::buggify_with_prob(probability);
    #[cfg(not(madsim))]
    {
        let _ = probability;
        false
    }
}

/// A value drawn from `range` with the simulation's generator (the range's start outside
/// simulation builds, where no site fires).
pub fn pick(range: Range<u64>) -> u64 {
    #[cfg(madsim)]
    return madsim::rand::Rng::gen_range(&mut madsim::rand::thread_rng(), range);
    #[cfg(not(madsim))]
    range.start
}

/// F-B4: sleeps a random `0..delay_ms_max` milliseconds with probability `probability` (when on).
pub async fn maybe_delay(probability: f64, delay_ms_max: u64) {
    if fires(probability) {
        tokio::time::sleep(Duration::from_millis(pick(0..delay_ms_max.max(1)))).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(not(madsim))]
    fn sites_never_fire_outside_simulation() {
        assert!((0..1000).all(|_| !super::fires(1.0)));
    }
}
