//! Zigzag varints, as the Kafka record format uses them (the protobuf `sint32` / `sint64`
//! encoding: zigzag, then little-endian base-128 groups with a continuation bit).
//!
//! Invariants: a `varint` decodes to an `i32` and takes at most [`VARINT_BYTES_MAX`] bytes; a
//! `varlong` decodes to an `i64` and takes at most [`VARLONG_BYTES_MAX`] bytes. Encodings with
//! more bytes, or whose last group carries bits beyond the type's width, are rejected rather than
//! truncated, so a corrupt length can never wrap into a plausible one. Non-minimal encodings
//! (e.g. `0x80 0x00` for 0) are accepted, as protobuf and Kafka readers accept them: some writers
//! reserve a fixed-width slot for a length and fill it in afterwards.

use bytes::BufMut;

/// Most bytes a zigzag `varint` (32-bit) can take: ceil(32 / 7).
pub const VARINT_BYTES_MAX: usize = 5;
/// Most bytes a zigzag `varlong` (64-bit) can take: ceil(64 / 7).
pub const VARLONG_BYTES_MAX: usize = 10;

/// Why a varint could not be read. The caller adds which field and which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The bytes ended with the continuation bit still set.
    Truncated,
    /// More groups than the type allows, or bits beyond the type's width.
    Overflow,
}

pub fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

pub fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

fn unzigzag64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Bytes the base-128 encoding of `raw` takes (1 for 0).
pub fn uvarint_len(raw: u64) -> usize {
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

pub fn varint_len(value: i32) -> usize {
    uvarint_len(u64::from(zigzag32(value)))
}

pub fn varlong_len(value: i64) -> usize {
    uvarint_len(zigzag64(value))
}

fn put_uvarint(out: &mut impl BufMut, mut raw: u64) {
    while raw >= 0x80 {
        out.put_u8((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

pub fn put_varint(out: &mut impl BufMut, value: i32) {
    put_uvarint(out, u64::from(zigzag32(value)));
}

pub fn put_varlong(out: &mut impl BufMut, value: i64) {
    put_uvarint(out, zigzag64(value));
}

/// Reads base-128 groups from `buf[*pos..]` into a value of `bits` bits (32 or 64); advances `pos`
/// only on success.
fn read_uvarint(buf: &[u8], pos: &mut usize, bits: u32) -> Result<u64, VarintError> {
    let bytes_max = match bits {
        32 => VARINT_BYTES_MAX,
        64 => VARLONG_BYTES_MAX,
        _ => unreachable!("varints are 32 or 64 bits"),
    };
    debug_assert_eq!(bytes_max, (bits as usize).div_ceil(7));
    let mut raw: u64 = 0;
    for index in 0..bytes_max {
        let Some(&byte) = buf.get(*pos + index) else {
            return Err(VarintError::Truncated);
        };
        let group = u64::from(byte & 0x7f);
        let shift = 7 * index as u32;
        // The last group may only fill the bits the type has left.
        if shift + 7 > bits && group >> (bits - shift) != 0 {
            return Err(VarintError::Overflow);
        }
        raw |= group << shift;
        if byte & 0x80 == 0 {
            *pos += index + 1;
            return Ok(raw);
        }
    }
    Err(VarintError::Overflow)
}

pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let raw = read_uvarint(buf, pos, 32)?;
    let raw = u32::try_from(raw).expect("read_uvarint(32) keeps the value within 32 bits");
    Ok(unzigzag32(raw))
}

pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    Ok(unzigzag64(read_uvarint(buf, pos, 64)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode32(value: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    fn encode64(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        out
    }

    #[test]
    fn varint_known_encodings() {
        // Zigzag maps 0, -1, 1, -2, 2 to 0, 1, 2, 3, 4 (protobuf encoding guide).
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (150, &[0xac, 0x02]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            assert_eq!(encode32(value), bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len(), "length of {value}");
            let mut pos = 0;
            assert_eq!(read_varint(bytes, &mut pos), Ok(value));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn varlong_known_encodings() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-65, &[0x81, 0x01]),
            (i64::MAX, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            (i64::MIN, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for &(value, bytes) in cases {
            assert_eq!(encode64(value), bytes, "encoding {value}");
            assert_eq!(varlong_len(value), bytes.len(), "length of {value}");
            let mut pos = 0;
            assert_eq!(read_varlong(bytes, &mut pos), Ok(value));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn varint_rejects_truncated_overlong_and_overflowing() {
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        // Six groups for a 32-bit value.
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos), Err(VarintError::Overflow));
        // Fifth group carries a 33rd bit.
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos), Err(VarintError::Overflow));
        // Tenth group of a varlong carries a 65th bit.
        let long = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03];
        assert_eq!(read_varlong(&long, &mut pos), Err(VarintError::Overflow));
        assert_eq!(pos, 0, "a failed read leaves the position alone");
        // Non-minimal but in range: accepted.
        assert_eq!(read_varint(&[0x82, 0x80, 0x00], &mut pos), Ok(1));
        assert_eq!(pos, 3);
    }

    #[test]
    fn varint_round_trips_every_length_boundary() {
        for shift in 0..31 {
            for value in [(1i32 << shift) - 1, 1i32 << shift, -(1i32 << shift), -(1i32 << shift) - 1] {
                let bytes = encode32(value);
                let mut pos = 0;
                assert_eq!(read_varint(&bytes, &mut pos), Ok(value));
                assert_eq!(varint_len(value), bytes.len());
            }
        }
        for shift in 0..63 {
            for value in [(1i64 << shift) - 1, 1i64 << shift, -(1i64 << shift), -(1i64 << shift) - 1] {
                let bytes = encode64(value);
                let mut pos = 0;
                assert_eq!(read_varlong(&bytes, &mut pos), Ok(value));
                assert_eq!(varlong_len(value), bytes.len());
            }
        }
    }
}
