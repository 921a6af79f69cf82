//! The shutdown signal. [`Server::shutdown`](crate::server::Server::shutdown) flips it once;
//! every task of the node (the client listener, each connection, the controller's duties, the
//! free-space watch) holds a [`Shutdown`] and stops at its next `select!` on
//! [`Shutdown::stopping`]. A connection then reads no new request but still answers the ones in
//! flight; the raft driver stops last, once every task has returned.

use odradek_seams::watch;

/// The signal: the sender flips it (`send(true)`), every clone of the receiver sees it.
pub fn channel() -> (watch::Sender<bool>, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (sender, Shutdown { receiver })
}

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    /// Resolves once shutdown was signalled (or its sender is gone).
    pub async fn stopping(&mut self) {
        // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}
