//! Fault hooks a simulation hands to [`Server::start_with`](crate::server::Server::start_with):
//! the transport fault layer on peer messages (CHECKLISTS F-N6) and holding one client request
//! (F-N8). A production node has none ([`FaultHooks::default`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use odradek_consensus::{FaultRates, TransportFaults};

#[derive(Clone, Debug, Default)]
pub struct FaultHooks {
    /// Drop, duplicate and delay single raft messages this node sends.
    pub peer_messages: Option<TransportFaults>,
    /// Hold one produce request for a while before handling it.
    pub request_hold: Option<RequestHold>,
}

/// F-N8: the next produce request any node holding a clone reads waits `Δ` before it is
/// handled — long enough for the client to time out and retry elsewhere, so the old request
/// arrives as a zombie after its retry. One request per [`RequestHold::arm`].
#[derive(Clone, Debug, Default)]
pub struct RequestHold {
    armed: Arc<Mutex<Option<Duration>>>,
}

impl RequestHold {
    pub fn arm(&self, hold: Duration) {
        *self.armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hold);
    }

    /// Disarms it, saying whether a request was still waiting to be caught.
    pub fn disarm(&self) -> bool {
        self.take().is_some()
    }

    /// The hold for the request at hand, if armed (then disarmed).
    pub fn take(&self) -> Option<Duration> {
        self.armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}
