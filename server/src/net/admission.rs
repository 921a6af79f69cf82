//! Which client connections a node accepts: at most `connections_max` open at once, and at most
//! `connections_per_address_max` of them from one IP address, so no single host can take every
//! slot (issue 19: 1,100 idle connections from one client locked every other client out).
//!
//! Invariant: `open` is the sum of `per_address` and never exceeds `connections_max`; every
//! count comes back when its [`ConnectionSlot`] is dropped (the connection's task ends).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `connections_max` are open.
    NodeFull { limit: usize },
    /// `connections_per_address_max` are open from this address.
    AddressFull { limit: usize },
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    per_address: BTreeMap<IpAddr, usize>,
}

/// The open connections, counted per address.
#[derive(Clone, Debug)]
pub struct Admission {
    connections_max: usize,
    per_address_max: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(connections_max: usize, per_address_max: usize) -> Admission {
        assert!(connections_max > 0 && per_address_max > 0, "connection limits are positive");
        Admission { connections_max, per_address_max, counts: Arc::default() }
    }

    /// A place for a connection from `address`, or why there is none.
    pub fn admit(&self, address: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut counts = lock(&self.counts);
        if counts.open >= self.connections_max {
            return Err(Refusal::NodeFull { limit: self.connections_max });
        }
        let from_address = counts.per_address.entry(address).or_insert(0);
        if *from_address >= self.per_address_max {
            return Err(Refusal::AddressFull { limit: self.per_address_max });
        }
        *from_address += 1;
        counts.open += 1;
        check(&counts, self.connections_max);
        Ok(ConnectionSlot { address, counts: self.counts.clone() })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.counts).open
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        assert!(counts.open > 0, "a slot is freed once");
        counts.open -= 1;
        let from_address = counts.per_address.get_mut(&self.address).expect("an admitted address is counted");
        assert!(*from_address > 0, "a slot is freed once");
        *from_address -= 1;
        if *from_address == 0 {
            counts.per_address.remove(&self.address);
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check(counts: &Counts, connections_max: usize) {
    assert!(counts.open <= connections_max, "{} connections open, limit {connections_max}", counts.open);
    debug_assert_eq!(counts.per_address.values().sum::<usize>(), counts.open, "per-address counts add up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_share_and_slots_come_back() {
        let admission = Admission::new(5, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::AddressFull { limit: 2 });
        let others: Vec<ConnectionSlot> = (0..2).map(|_| admission.admit(b).unwrap()).collect();
        assert_eq!(admission.open(), 4);
        drop(first);
        let _again = admission.admit(a).expect("a freed slot is the address's again");
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let _fifth = admission.admit(c).unwrap();
        assert_eq!(admission.admit(c).unwrap_err(), Refusal::NodeFull { limit: 5 });
        drop(others);
        assert_eq!(admission.open(), 3);
    }
}
