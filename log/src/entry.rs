//! The on-disk entry: one Raft log entry = a fixed header followed by an opaque payload.
//!
//! Header layout (little-endian, `ENTRY_HEADER_BYTES` = 48):
//!
//! ```text
//!  0  magic          u16   ENTRY_MAGIC
//!  2  version        u8    ENTRY_VERSION
//!  3  kind           u8    EntryKind
//!  4  payload_bytes  u32
//!  8  crc            u32   crc32 (crc32fast) over bytes 0..8, 12..48 and the payload
//! 12  term           u64
//! 20  index          u64
//! 28  base_offset    u64
//! 36  record_count   u32
//! 40  max_timestamp  i64   milliseconds; -1 when the entry holds no records
//! ```
//!
//! The header alone is enough to rebuild every index. A data entry's payload is a record batch
//! (Kafka RecordBatch v2, built by the client) that the log stores and returns unchanged.
//! Offsets: a data entry holding n records takes `base_offset .. base_offset + n`; every other
//! kind holds no records and takes none, but still carries `base_offset` = the next offset, so
//! a follower can check offset continuity at every entry.

use bytes::Bytes;

/// Size of the fixed entry header.
pub const ENTRY_HEADER_BYTES: usize = 48;
/// First two bytes of every entry.
pub const ENTRY_MAGIC: u16 = 0x0D1E;
/// The header version this code writes and reads.
pub const ENTRY_VERSION: u8 = 1;
/// The largest payload one entry may carry. Larger appends are refused with a clear error.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What an entry is. Only `Data` entries hold records (and take offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A record batch (the payload is opaque to the log).
    Data,
    /// An empty entry a new Raft leader appends.
    Noop,
    /// A Raft membership change (the payload is the encoded change).
    Config,
    /// A state-machine command that holds no records (e.g. a controller command in group 0).
    Command,
}

impl EntryKind {
    fn to_byte(self) -> u8 {
        match self {
            EntryKind::Data => 1,
            EntryKind::Noop => 2,
            EntryKind::Config => 3,
            EntryKind::Command => 4,
        }
    }

    fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            1 => Some(EntryKind::Data),
            2 => Some(EntryKind::Noop),
            3 => Some(EntryKind::Config),
            4 => Some(EntryKind::Command),
            _ => None,
        }
    }
}

/// One log entry: the header fields plus the payload bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    /// First offset of this entry's records; for entries without records, the next offset.
    pub base_offset: u64,
    pub record_count: u32,
    /// Largest record timestamp (ms) in the entry, -1 when it holds no records.
    pub max_timestamp: i64,
    pub payload: Bytes,
}

impl Entry {
    /// A data entry holding `record_count` records.
    pub fn data(term: u64, index: u64, base_offset: u64, record_count: u32, timestamp_max: i64, payload: Bytes) -> Entry {
        Entry { term, index, kind: EntryKind::Data, base_offset, record_count, max_timestamp: timestamp_max, payload }
    }

    /// An entry without records (`Noop`, `Config` or `Command`).
    pub fn without_records(term: u64, index: u64, kind: EntryKind, offset_next: u64, payload: Bytes) -> Entry {
        assert!(kind != EntryKind::Data, "data entries carry records");
        Entry { term, index, kind, base_offset: offset_next, record_count: 0, max_timestamp: -1, payload }
    }

    /// The offset after this entry's last record.
    pub fn offset_next(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Bytes this entry occupies on disk.
    pub fn encoded_bytes(&self) -> usize {
        ENTRY_HEADER_BYTES + self.payload.len()
    }

    /// Appends the encoded entry (header + payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        assert!(self.payload.len() <= ENTRY_PAYLOAD_BYTES_MAX, "entry {} payload above ENTRY_PAYLOAD_BYTES_MAX", self.index);
        assert!(self.kind == EntryKind::Data || self.record_count == 0, "entry {} holds records but is no data entry", self.index);
        let start = out.len();
        out.extend_from_slice(&ENTRY_MAGIC.to_le_bytes());
        out.push(ENTRY_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // crc, filled below
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        debug_assert_eq!(out.len() - start, ENTRY_HEADER_BYTES);
        out.extend_from_slice(&self.payload);
        let crc = entry_crc(&out[start..start + ENTRY_HEADER_BYTES], &self.payload);
        out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(out.len() - start, self.encoded_bytes(), "entry {} encoded to its size", self.index);
    }
}

/// The crc32 over the header (without its crc field) and the payload.
fn entry_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..8]);
    hasher.update(&header[12..ENTRY_HEADER_BYTES]);
    hasher.update(payload);
    hasher.finalize()
}

/// A parsed header, before the payload has been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub kind: EntryKind,
    pub payload_bytes: u32,
    pub crc: u32,
    pub term: u64,
    pub index: u64,
    pub base_offset: u64,
    pub record_count: u32,
    pub max_timestamp: i64,
}

impl EntryHeader {
    /// Parses a header. `None` when the bytes cannot be a header this version wrote (bad
    /// magic, version, kind, or a length above the limit); the crc is checked by
    /// [`EntryHeader::verify`] once the payload is at hand.
    pub fn parse(bytes: &[u8]) -> Option<EntryHeader> {
        if bytes.len() < ENTRY_HEADER_BYTES {
            return None;
        }
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if u16_at(0) != ENTRY_MAGIC || bytes[2] != ENTRY_VERSION {
            return None;
        }
        let kind = EntryKind::from_byte(bytes[3])?;
        let payload_bytes = u32_at(4);
        if payload_bytes as usize > ENTRY_PAYLOAD_BYTES_MAX {
            return None;
        }
        let record_count = u32_at(36);
        if kind != EntryKind::Data && record_count != 0 {
            return None;
        }
        Some(EntryHeader {
            kind,
            payload_bytes,
            crc: u32_at(8),
            term: u64_at(12),
            index: u64_at(20),
            base_offset: u64_at(28),
            record_count,
            max_timestamp: u64_at(40) as i64,
        })
    }

    /// Bytes the entry occupies on disk.
    pub fn encoded_bytes(&self) -> usize {
        ENTRY_HEADER_BYTES + self.payload_bytes as usize
    }

    /// The offset after this entry's last record.
    pub fn offset_next(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// True when `header_bytes` + `payload` carry the checksum this header claims.
    pub fn verify(&self, header_bytes: &[u8], payload: &[u8]) -> bool {
        payload.len() == self.payload_bytes as usize && entry_crc(header_bytes, payload) == self.crc
    }

    /// The whole entry, once [`EntryHeader::verify`] has passed.
    pub fn into_entry(self, payload: Bytes) -> Entry {
        assert_eq!(payload.len(), self.payload_bytes as usize, "entry {} joined to a payload of another size", self.index);
        Entry {
            term: self.term,
            index: self.index,
            kind: self.kind,
            base_offset: self.base_offset,
            record_count: self.record_count,
            max_timestamp: self.max_timestamp,
            payload,
        }
    }
}

/// Decodes one verified entry at the start of `bytes`. `None` if it is not a whole, valid
/// entry.
pub fn decode_entry(bytes: &[u8]) -> Option<Entry> {
    let header = EntryHeader::parse(bytes)?;
    let end = header.encoded_bytes();
    if bytes.len() < end {
        return None;
    }
    let payload = &bytes[ENTRY_HEADER_BYTES..end];
    if !header.verify(&bytes[..ENTRY_HEADER_BYTES], payload) {
        return None;
    }
    let entry = header.into_entry(Bytes::copy_from_slice(payload));
    assert_eq!(entry.encoded_bytes(), end, "entry {} decoded to the size its header names", entry.index);
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry::data(7, 42, 1000, 3, 1_700_000_000_000, Bytes::from_static(b"three records"))
    }

    #[test]
    fn round_trip() {
        let entry = sample();
        let mut out = Vec::new();
        entry.encode_into(&mut out);
        assert_eq!(out.len(), entry.encoded_bytes());
        assert_eq!(decode_entry(&out), Some(entry.clone()));
        let noop = Entry::without_records(8, 43, EntryKind::Noop, entry.offset_next(), Bytes::new());
        out.clear();
        noop.encode_into(&mut out);
        assert_eq!(decode_entry(&out), Some(noop));
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let mut out = Vec::new();
        sample().encode_into(&mut out);
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_entry(&damaged), None, "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn truncated_entry_is_rejected() {
        let mut out = Vec::new();
        sample().encode_into(&mut out);
        for len in 0..out.len() {
            assert_eq!(decode_entry(&out[..len]), None);
        }
    }
}
