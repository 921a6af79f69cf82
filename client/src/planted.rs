//! Planted bugs of the client: deliberate breakages the checkers must catch (CHECKLISTS.md,
//! issue 14's catalogue), switched on only in simulation builds (`--cfg madsim`). A consumer
//! reads its switches from [`ConsumerConfig::planted`](crate::ConsumerConfig::planted); in any
//! other build [`Planted::auto_commit_of_current_poll`] is false whatever the field says, so a
//! normal build has no way to turn one on.

use std::str::FromStr;

/// One deliberate breakage of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// The auto-commit due at the start of a poll is sent at its end instead, with the positions
    /// after the records that poll is about to return: the group's position moves past records
    /// the application has not seen yet (C4; lost on a crash right after the poll).
    AutoCommitOfCurrentPoll,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 1] = [PlantedBug::AutoCommitOfCurrentPoll];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AutoCommitOfCurrentPoll => "auto-commit-of-current-poll",
        }
    }
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<PlantedBug, String> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name).ok_or_else(|| {
            let names: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown client planted bug {name:?}; known: {}", names.join(", "))
        })
    }
}

/// A consumer's planted bugs as switches; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    auto_commit_of_current_poll: bool,
}

impl Planted {
    /// The switches for `bugs`.
    pub fn of(bugs: &[PlantedBug]) -> Planted {
        Planted { auto_commit_of_current_poll: bugs.contains(&PlantedBug::AutoCommitOfCurrentPoll) }
    }

    /// [`PlantedBug::AutoCommitOfCurrentPoll`], in a simulation build only.
    pub fn auto_commit_of_current_poll(self) -> bool {
        cfg!(madsim) && self.auto_commit_of_current_poll
    }
}
