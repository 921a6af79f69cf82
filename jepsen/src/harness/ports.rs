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

/// Names another range `A..B` of ports for the blocks (default `FIRST_PORT..END_PORT`): for a
/// machine where other users of this scheme must stay apart by range, not only by lock.
pub const PORT_RANGE_ENV: &str = "ODRADEK_TEST_PORTS";

/// The range blocks come from: [`PORT_RANGE_ENV`] when it parses as `A..B` with room for one
/// block, else the default.
pub fn port_range() -> (u16, u16) {
    let parsed = std::env::var(PORT_RANGE_ENV).ok().and_then(|text| {
        let (first, end) = text.split_once("..")?;
        let (first, end) = (first.trim().parse::<u16>().ok()?, end.trim().parse::<u16>().ok()?);
        (first >= 1024 && end > first && usize::from(end - first) >= BLOCK_PORTS_MAX).then_some((first, end))
    });
    parsed.unwrap_or((FIRST_PORT, END_PORT))
}

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
    let (first_port, end_port) = port_range();
    let block_count = usize::from(end_port - first_port) / BLOCK_PORTS_MAX;
    let first_block = std::process::id() as usize % block_count;
    for step in 0..block_count {
        let block = (first_block + step) % block_count;
        let base = first_port + (block * BLOCK_PORTS_MAX) as u16;
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
        format!("no free block of {count} ports in {first_port}..{end_port} (locks in {})", dir.display()),
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
        let (first_port, end_port) = port_range();
        assert!(first.ports().iter().chain(second.ports()).all(|&port| (first_port..end_port).contains(&port)));
        drop(first);
        let third = reserve(10).unwrap();
        assert!(third.ports().iter().all(|port| !second.ports().contains(port)));
        assert!(reserve(BLOCK_PORTS_MAX + 1).is_err());
    }
}
