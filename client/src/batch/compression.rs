//! Compressed record batches: the codecs of attribute bits 0..2 (gzip, snappy, lz4, zstd, as in
//! Kafka), each from its established crate, and the two batch-level operations built on them:
//! [`compress_batch`] (producer side) and [`decompress_records`] (broker validation, consumers).
//!
//! In a compressed batch only the records region (everything after the 61-byte header) is
//! compressed; the header, the CRC over attributes..end and the records count stay as in a plain
//! batch, so the broker's header checks and its base-offset rewrite work unchanged.
//!
//! Invariants:
//! - [`decompress_records`] never produces more than its `bytes_max` bytes, and never allocates
//!   more than a bounded multiple of it, whatever the input claims (decompression bombs are
//!   refused with [`BatchError::DecompressedTooLarge`]); any input yields `Ok` or an error, never
//!   a panic.
//! - `decompress(codec, compress(codec, bytes))` is `bytes` for every codec.
//!
//! Formats, as Kafka clients write them: gzip is a gzip stream (RFC 1952); lz4 is an LZ4 frame;
//! zstd is a zstd frame; snappy is either the "xerial" block framing the Java client writes
//! (magic `82 53 4E 41 50 50 59 00`, two i32 versions, then blocks of i32 length + raw snappy)
//! or one raw snappy block, which librdkafka writes. We write the xerial framing, which every
//! client reads.
//!
//! Cost sketch (the broker decompresses every compressed batch once, in the connection's task,
//! never in the raft loop): lz4 and snappy decode at roughly 1–4 GB/s per core, zstd at about
//! 1 GB/s, gzip at a few hundred MB/s; a batch decompressing to the full 8 MiB bound costs about
//! 2–8 ms (gzip up to ~30 ms) and 8 MiB of transient memory per produce in flight. Typical
//! batches (64–256 KiB decompressed) cost well under a millisecond. Consumers pay the same once
//! per batch they read; followers and fetch never decompress.

use std::io::Read;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{attributes, crc_compute, position, BatchError, BatchHeader, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};

/// Most bytes a batch's records region may decompress to: the bound against decompression bombs
/// on the broker (which decompresses every compressed batch it is sent) and on consumers. Eight
/// times [`BATCH_BYTES_MAX`](super::BATCH_BYTES_MAX): above what real producers put in one batch
/// (librdkafka's default `batch.size` is 1 MB before compression; the Java client's 16 KiB), and
/// small enough that a produce request's transient memory stays bounded.
pub const RECORDS_DECOMPRESSED_BYTES_MAX: usize = 8 << 20;

/// Largest zstd window (as a power of two) we accept: 16 MiB, twice the decompressed limit, so
/// any frame a real producer writes decodes, and a frame cannot make the decoder reserve more.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Size of the blocks we split a snappy stream into (the xerial framing's default).
const SNAPPY_XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// The xerial snappy framing's magic, followed by its version and compatible version (both 1).
const SNAPPY_XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const SNAPPY_XERIAL_HEADER_BYTES: usize = 16;

/// zstd compression level for batches we compress: zstd's default, as Kafka's.
const ZSTD_LEVEL: i32 = 3;

/// A compression codec of attribute bits 0..2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec with this id (attribute bits 0..2), if it is one of Kafka's five.
    pub fn from_codec(codec: u8) -> Option<Compression> {
        Compression::ALL.into_iter().find(|compression| compression.codec() == codec)
    }

    /// The id in attribute bits 0..2.
    pub fn codec(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(name: &str) -> Result<Compression, String> {
        Compression::ALL
            .into_iter()
            .find(|compression| compression.name() == name)
            .ok_or_else(|| format!("unknown compression {name:?}; one of none, gzip, snappy, lz4, zstd"))
    }
}

/// `bytes` compressed with `compression` (a copy for `None`).
pub fn compress(compression: Compression, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => GZIP_DEFLATE.with_borrow_mut(|deflate| gzip(deflate, bytes)),
        Compression::Snappy => {
            let mut out = Vec::with_capacity(SNAPPY_XERIAL_HEADER_BYTES + snap::raw::max_compress_len(bytes.len()));
            out.extend_from_slice(&SNAPPY_XERIAL_MAGIC);
            out.put_i32(1); // version
            out.put_i32(1); // compatible version
            let mut encoder = snap::raw::Encoder::new();
            for block in bytes.chunks(SNAPPY_XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).expect("a block of 32 KiB is within snappy's limits");
                out.put_i32(i32::try_from(compressed.len()).expect("a compressed 32 KiB block fits an i32"));
                out.extend_from_slice(&compressed);
            }
            out
        }
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(bytes).expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => ZSTD_CONTEXT.with_borrow_mut(|context| {
            let context = match context {
                Some(context) => context,
                None => context.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd's default level is valid")),
            };
            context.compress(bytes).expect("zstd compresses any input into a Vec")
        }),
    }
}

// A gzip or zstd compressor allocates and zeroes its tables (a few hundred KiB) when it is made,
// which cost more than compressing a small batch (a sixth of a heavy simulated run's time went
// there). Each thread keeps one of each and resets it between batches; the output is the same
// bytes a new one writes (tests below).
thread_local! {
    static GZIP_DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::default(), false));
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// The gzip header flate2's `GzEncoder` writes with its defaults (RFC 1952): deflate, no flags,
/// no modification time, no extra flags for the default level, unknown operating system.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// `bytes` as one gzip member (RFC 1952), deflated with `deflate` (raw deflate, reset after).
fn gzip(deflate: &mut flate2::Compress, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + bytes.len() / 2 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    let consumed_before = deflate.total_in();
    loop {
        let consumed = usize::try_from(deflate.total_in() - consumed_before).expect("at most the input's length");
        out.reserve(bytes.len() / 4 + 64);
        let status = deflate
            .compress_vec(&bytes[consumed..], &mut out, flate2::FlushCompress::Finish)
            .expect("deflating from memory into memory cannot fail");
        if status == flate2::Status::StreamEnd {
            break;
        }
    }
    deflate.reset();
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes()); // ISIZE: the length modulo 2^32
    out
}

/// `bytes` decompressed with `compression`, refused past `bytes_max` decompressed bytes.
pub fn decompress(compression: Compression, bytes: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let codec = compression.codec();
    let failed = |reason: String| BatchError::DecompressFailed { codec, reason };
    let out = match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(bytes), codec, bytes_max)?,
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(bytes), codec, bytes_max)?,
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(|error| failed(error.to_string()))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|error| failed(error.to_string()))?;
            read_bounded(decoder, codec, bytes_max)?
        }
        Compression::Snappy => snappy_decompress(bytes, bytes_max)?,
    };
    if out.len() > bytes_max {
        return Err(BatchError::DecompressedTooLarge { codec, bytes_max });
    }
    Ok(out)
}

/// Reads `reader` to its end, stopping with an error once it yields more than `bytes_max` bytes.
fn read_bounded(reader: impl Read, codec: u8, bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let limit = u64::try_from(bytes_max).expect("a usize fits a u64") + 1;
    reader.take(limit).read_to_end(&mut out).map_err(|error| BatchError::DecompressFailed { codec, reason: error.to_string() })?;
    if out.len() > bytes_max {
        return Err(BatchError::DecompressedTooLarge { codec, bytes_max });
    }
    Ok(out)
}

/// Snappy, in the xerial framing or as one raw block. Every block's decompressed length is read
/// from its own preamble and checked against what remains of `bytes_max` before it is decoded.
fn snappy_decompress(bytes: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy.codec();
    let failed = |reason: String| BatchError::DecompressFailed { codec, reason };
    let mut out = Vec::new();
    let decode_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let block_bytes = snap::raw::decompress_len(block).map_err(|error| failed(error.to_string()))?;
        if block_bytes > bytes_max - out.len() {
            return Err(BatchError::DecompressedTooLarge { codec, bytes_max });
        }
        let start = out.len();
        out.resize(start + block_bytes, 0);
        let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|error| failed(error.to_string()))?;
        if written != block_bytes {
            return Err(failed(format!("a block's preamble says {block_bytes} bytes but it decodes to {written}")));
        }
        Ok(())
    };
    if !bytes.starts_with(&SNAPPY_XERIAL_MAGIC) {
        decode_block(bytes, &mut out)?;
        return Ok(out);
    }
    if bytes.len() < SNAPPY_XERIAL_HEADER_BYTES {
        return Err(failed("the xerial snappy header is truncated".into()));
    }
    let mut rest = &bytes[SNAPPY_XERIAL_HEADER_BYTES..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(failed("a xerial snappy block length is truncated".into()));
        }
        let block_bytes = rest.get_i32();
        let Some(block_bytes) = usize::try_from(block_bytes).ok().filter(|&length| length <= rest.len()) else {
            return Err(failed(format!("a xerial snappy block of {block_bytes} bytes with {} left", rest.len())));
        };
        let (block, after) = rest.split_at(block_bytes);
        decode_block(block, &mut out)?;
        rest = after;
    }
    Ok(out)
}

/// The codec a validated batch's header names. [`BatchHeader::parse`] refuses undefined codecs,
/// so this cannot fail on a header it returned.
pub fn batch_compression(header: &BatchHeader) -> Compression {
    Compression::from_codec(header.compression()).expect("a parsed header names a defined codec")
}

/// The records region of a validated `batch` with `header`, decompressed (bounded by
/// [`RECORDS_DECOMPRESSED_BYTES_MAX`]); `None` when the batch is not compressed.
pub fn decompress_records(batch: &[u8], header: &BatchHeader) -> Result<Option<Vec<u8>>, BatchError> {
    assert_eq!(header.bytes_len(), batch.len(), "decompress_records wants the validated batch whole");
    match batch_compression(header) {
        Compression::None => Ok(None),
        compression => decompress(compression, &batch[position::RECORDS..], RECORDS_DECOMPRESSED_BYTES_MAX).map(Some),
    }
}

/// A plain (uncompressed) batch, as [`BatchBuilder::build`](super::BatchBuilder::build) returns
/// it, with its records region compressed: attributes name the codec, batchLength and the CRC are
/// recomputed, and every other field stays. Returns the batch unchanged when `compression` is
/// `None` or when compressing would not make it smaller (so compression can never push a batch
/// past a size limit the plain batch met); the caller can read the codec it got from attributes.
///
/// # Panics
/// If `batch` is not a valid plain batch (a bug in the caller: it comes from the builder).
pub fn compress_batch(batch: Bytes, compression: Compression) -> Bytes {
    let header = BatchHeader::parse(&batch).expect("compress_batch wants a valid batch");
    assert_eq!(header.compression(), 0, "compress_batch wants an uncompressed batch");
    if compression == Compression::None {
        return batch;
    }
    let compressed = compress(compression, &batch[position::RECORDS..]);
    if BATCH_HEADER_BYTES + compressed.len() >= batch.len() {
        return batch;
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + compressed.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&compressed);
    let batch_length = i32::try_from(out.len() - BATCH_LOG_OVERHEAD_BYTES).expect("smaller than the plain batch");
    out[position::BATCH_LENGTH..position::PARTITION_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !attributes::COMPRESSION_MASK) | i16::from(compression.codec());
    out[position::ATTRIBUTES..position::LAST_OFFSET_DELTA].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc_compute(&out);
    out[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    let out = out.freeze();
    debug_assert!(BatchHeader::parse(&out).is_ok_and(|parsed| parsed.compression() == compression.codec()));
    out
}
