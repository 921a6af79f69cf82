//! Fault hooks a simulation hands to [`Server::start_with`](crate::server::Server::start_with):
//! the transport fault layer on peer messages (CHECKLISTS F-N6), holding one client request
//! (F-N8) and resetting a client connection instead of answering (F-N9). A production node has
//! none ([`FaultHooks::default`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use odradek_consensus::{FaultRates, TransportFaults};

#[derive(Clone, Debug, Default)]
pub struct FaultHooks {
    /// Drop, duplicate and delay single raft messages this node sends.
    pub peer_messages: Option<TransportFaults>,
    /// Hold one produce request for a while before handling it.
    pub request_hold: Option<RequestHold>,
    /// Drop one produce response and reset its connection.
    pub response_cut: Option<ResponseCut>,
}

/// A one-shot switch shared by the simulation and every node holding a clone: armed with a
/// value, taken (and so disarmed) by the first node that meets the fault's occasion.
#[derive(Clone, Debug, Default)]
pub struct OneShot<T> {
    armed: Arc<Mutex<Option<T>>>,
}

impl<T> OneShot<T> {
    pub fn arm(&self, value: T) {
        *self.armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(value);
    }

    /// Disarms it, saying whether it was still armed (nothing met it).
    pub fn disarm(&self) -> bool {
        self.take().is_some()
    }

    /// The value, if armed (then disarmed).
    pub fn take(&self) -> Option<T> {
        self.armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

/// F-N8: the next produce request any node holding a clone reads waits `Δ` before it is
/// handled — long enough for the client to time out and retry elsewhere, so the old request
/// arrives as a zombie after its retry. One request per [`OneShot::arm`].
pub type RequestHold = OneShot<Duration>;

/// F-N9: the next produce request any node holding a clone completes is not answered; its
/// connection is reset instead (with every other answer still pending on it). The write may well
/// have happened: the client sees an indefinite outcome and retries on a new connection.
pub type ResponseCut = OneShot<()>;
