//! Loopback ports for clusters of real processes (the harness, the server's end-to-end tests):
//! a block of consecutive ports below the kernel's ephemeral range, held under a file lock for as
//! long as the [`PortBlock`] lives.
//!
//! Why not "bind port 0, read the port, release it": the port goes back to the kernel's
//! ephemeral pool, so the next port-0 bind anywhere on the machine (a proxy of this very harness,
//! another test's cluster, an outgoing connection's source port) can take it before the node that
//! was meant to bind it starts. A node that loses its port never starts, and a fresh cluster
//! forms only once every member answered (DESIGN.md, the identity rule's bootstrap), so one lost
//! port fails the whole setup. Ports in `[FIRST_PORT, END_PORT)` are never handed out by the
//! kernel (Linux's ephemeral range starts at 32768), and the lock file keeps two reservers on
//! this machine (parallel tests, the matrix script) apart. A block some other program listens on
//! is skipped.
//!
//! A lock is released when its file closes, so a killed test leaves no stale reservation.

use std::fs::{File, TryLockError};
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;

/// The first port of the first block.
pub const FIRST_PORT: u16 = 10_000;
/// One past the last port any block uses (below the CLI test's 20000.. and the ephemeral range).
pub const END_PORT: u16 = 20_000;
/// Ports per block: a 7-node cluster with its peer-link proxies fits.
pub const BLOCK_PORTS_MAX: usize = 80;

const BLOCK_COUNT: usize = (END_PORT - FIRST_PORT) as usize / BLOCK_PORTS_MAX;

/// `count` consecutive free loopback ports, reserved until dropped.
#[derive(Debug)]
pub struct PortBlock {
    ports: Vec<u16>,
    _lock: File,
}

impl PortBlock {
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Reserves `count` (at most [`BLOCK_PORTS_MAX`]) ports. Blocks are tried from one spread by the
/// process id, so parallel reservers rarely contend for the same lock.
pub fn reserve(count: usize) -> io::Result<PortBlock> {
    if count > BLOCK_PORTS_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{count} ports asked for; a block holds at most {BLOCK_PORTS_MAX}"),
        ));
    }
    let dir = lock_dir();
    std::fs::create_dir_all(&dir)?;
    let first_block = std::process::id() as usize % BLOCK_COUNT;
    for step in 0..BLOCK_COUNT {
        let block = (first_block + step) % BLOCK_COUNT;
        let base = FIRST_PORT + (block * BLOCK_PORTS_MAX) as u16;
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join(format!("block-{base}.lock")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(error)) => return Err(error),
        }
        let ports: Vec<u16> = (base..base + count as u16).collect();
        if ports.iter().all(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return Ok(PortBlock { ports, _lock: lock });
        }
        // Someone outside this scheme listens in the block: leave it (the lock closes here).
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free block of {count} ports in {FIRST_PORT}..{END_PORT} (locks in {})", dir.display()),
    ))
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("odradek-test-ports")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_share_a_port() {
        let first = reserve(10).unwrap();
        let second = reserve(BLOCK_PORTS_MAX).unwrap();
        assert_eq!(first.ports().len(), 10);
        assert_eq!(second.ports().len(), BLOCK_PORTS_MAX);
        assert!(first.ports().iter().all(|port| !second.ports().contains(port)));
        assert!(first.ports().iter().chain(second.ports()).all(|&port| (FIRST_PORT..END_PORT).contains(&port)));
        drop(first);
        let third = reserve(10).unwrap();
        assert!(third.ports().iter().all(|port| !second.ports().contains(port)));
        assert!(reserve(BLOCK_PORTS_MAX + 1).is_err());
    }
}
