//! `getrandom` 0.2's public API, forwarded to getrandom 0.3.
//!
//! Why: rand 0.8 (raft-rs election timeouts) reaches the OS through getrandom 0.2, which on
//! Linux issues the raw `getrandom` syscall; madsim cannot intercept a raw syscall, so every
//! run draws different timeouts and the simulation is not deterministic. getrandom 0.3 calls
//! the libc `getrandom` function, which madsim replaces with its seeded generator. The root
//! `Cargo.toml` patches crates-io `getrandom` with this crate (version 0.2.99, so it satisfies
//! every `^0.2` requirement); `cargo tree -i getrandom@0.2.99` shows who uses it.
//!
//! Kept from 0.2: [`getrandom`], [`getrandom_uninit`], and [`Error`] with its code layout (a
//! `NonZeroU32`: OS error codes below [`Error::INTERNAL_START`], the crate's own codes from
//! there, custom codes from [`Error::CUSTOM_START`]) and public constants. Not kept: the
//! `register_custom_getrandom!` macro (no dependency here uses it). Written from the 0.2 API
//! documentation; no upstream source is copied.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

use core::fmt;
use core::mem::MaybeUninit;
use core::num::NonZeroU32;

/// A getrandom 0.2 error: a non-zero code (see the module documentation for its layout).
#[derive(Copy, Clone, Eq, PartialEq)]
pub struct Error(NonZeroU32);

impl Error {
    /// The first code reserved for this crate's own errors; codes below it are OS errors.
    pub const INTERNAL_START: u32 = 1 << 31;
    /// The first code reserved for errors of a custom backend.
    pub const CUSTOM_START: u32 = (1 << 31) + (1 << 30);

    /// This target/platform is not supported.
    pub const UNSUPPORTED: Error = Error::internal(0);
    /// The platform-specific `errno` returned a non-positive value.
    pub const ERRNO_NOT_POSITIVE: Error = Error::internal(1);
    /// An unexpected situation (here: a getrandom 0.3 error with no 0.2 equivalent).
    pub const UNEXPECTED: Error = Error::internal(2);
    /// Call to iOS `SecRandomCopyBytes` failed.
    pub const IOS_SEC_RANDOM: Error = Error::internal(3);
    /// Call to Windows `RtlGenRandom` failed.
    pub const WINDOWS_RTL_GEN_RANDOM: Error = Error::internal(4);
    /// RDRAND instruction failed due to a hardware issue.
    pub const FAILED_RDRAND: Error = Error::internal(5);
    /// RDRAND instruction unsupported on this target.
    pub const NO_RDRAND: Error = Error::internal(6);
    /// The environment does not support the Web Crypto API.
    pub const WEB_CRYPTO: Error = Error::internal(7);
    /// Calling Web Crypto API `crypto.getRandomValues` failed.
    pub const WEB_GET_RANDOM_VALUES: Error = Error::internal(8);
    /// On VxWorks, call to `randSecure` failed (the generator is not initialized yet).
    pub const VXWORKS_RAND_SECURE: Error = Error::internal(11);
    /// Node.js does not have the `crypto` CommonJS module.
    pub const NODE_CRYPTO: Error = Error::internal(12);
    /// Calling Node.js `crypto.randomFillSync` failed.
    pub const NODE_RANDOM_FILL_SYNC: Error = Error::internal(13);
    /// Called from an ES module on Node.js, which is unsupported.
    pub const NODE_ES_MODULE: Error = Error::internal(14);

    const fn internal(offset: u32) -> Error {
        match NonZeroU32::new(Error::INTERNAL_START + offset) {
            Some(code) => Error(code),
            None => panic!("internal error codes are above zero"),
        }
    }

    /// The OS error code, if this error came from the OS (a code below `INTERNAL_START`).
    pub fn raw_os_error(self) -> Option<i32> {
        let code = self.0.get();
        if code < Error::INTERNAL_START {
            Some(code as i32)
        } else {
            None
        }
    }

    /// The raw code of this error.
    pub const fn code(self) -> NonZeroU32 {
        self.0
    }

    fn description(self) -> Option<&'static str> {
        let text = match self {
            Error::UNSUPPORTED => "no random source for this target",
            Error::ERRNO_NOT_POSITIVE => "the OS reported a failure without a positive errno",
            Error::UNEXPECTED => "unexpected random source failure",
            Error::IOS_SEC_RANDOM => "iOS SecRandomCopyBytes failed",
            Error::WINDOWS_RTL_GEN_RANDOM => "Windows RtlGenRandom failed",
            Error::FAILED_RDRAND => "the RDRAND instruction kept failing",
            Error::NO_RDRAND => "no RDRAND instruction on this CPU",
            Error::WEB_CRYPTO => "no Web Crypto API in this environment",
            Error::WEB_GET_RANDOM_VALUES => "crypto.getRandomValues failed",
            Error::VXWORKS_RAND_SECURE => "VxWorks randSecure: generator not initialized",
            Error::NODE_CRYPTO => "no Node.js crypto module",
            Error::NODE_RANDOM_FILL_SYNC => "Node.js crypto.randomFillSync failed",
            Error::NODE_ES_MODULE => "Node.js ES modules are unsupported",
            _ => return None,
        };
        Some(text)
    }

    /// Maps a getrandom 0.3 error to its 0.2 equivalent: OS codes pass through, the shared
    /// internal errors map by name, anything else is `UNEXPECTED`.
    fn from_v03(error: getrandom03::Error) -> Error {
        if let Some(os) = error.raw_os_error() {
            return match u32::try_from(os).ok().and_then(NonZeroU32::new) {
                Some(code) if code.get() < Error::INTERNAL_START => Error(code),
                _ => Error::ERRNO_NOT_POSITIVE,
            };
        }
        if error == getrandom03::Error::UNSUPPORTED {
            Error::UNSUPPORTED
        } else if error == getrandom03::Error::ERRNO_NOT_POSITIVE {
            Error::ERRNO_NOT_POSITIVE
        } else {
            Error::UNEXPECTED
        }
    }
}

impl From<NonZeroU32> for Error {
    fn from(code: NonZeroU32) -> Error {
        Error(code)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        if let Some(os) = self.raw_os_error() {
            debug.field("os_error", &os);
        } else if let Some(text) = self.description() {
            debug.field("internal_code", &self.0.get());
            debug.field("description", &text);
        } else {
            debug.field("unknown_code", &self.0.get());
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(os) = self.raw_os_error() {
            write!(f, "OS error {os}")
        } else if let Some(text) = self.description() {
            f.write_str(text)
        } else {
            write!(f, "unknown getrandom error code {}", self.0.get())
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(error: Error) -> std::io::Error {
        match error.raw_os_error() {
            Some(os) => std::io::Error::from_raw_os_error(os),
            None => std::io::Error::other(error),
        }
    }
}

/// Fills `dest` with random bytes (under madsim: from the simulation's seeded generator).
pub fn getrandom(dest: &mut [u8]) -> Result<(), Error> {
    getrandom03::fill(dest).map_err(Error::from_v03)
}

/// Fills `dest` with random bytes and returns it as initialized.
pub fn getrandom_uninit(dest: &mut [MaybeUninit<u8>]) -> Result<&mut [u8], Error> {
    getrandom03::fill_uninit(dest).map_err(Error::from_v03)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let mut first = [0u8; 32];
        let mut second = [0u8; 32];
        getrandom(&mut first).unwrap();
        getrandom(&mut second).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn uninit_returns_the_whole_buffer() {
        let mut buffer = [MaybeUninit::<u8>::uninit(); 16];
        let filled = getrandom_uninit(&mut buffer).unwrap();
        assert_eq!(filled.len(), 16);
    }

    #[test]
    fn code_layout() {
        assert_eq!(Error::UNSUPPORTED.code().get(), Error::INTERNAL_START);
        assert_eq!(Error::UNEXPECTED.code().get(), Error::INTERNAL_START + 2);
        assert_eq!(Error::UNSUPPORTED.raw_os_error(), None);
        let os = Error::from(NonZeroU32::new(5).unwrap());
        assert_eq!(os.raw_os_error(), Some(5));
        assert_eq!((Error::INTERNAL_START, Error::CUSTOM_START), (0x8000_0000, 0xC000_0000));
        let custom = Error::from(NonZeroU32::new(Error::CUSTOM_START + 1).unwrap());
        assert_eq!(custom.raw_os_error(), None);
        assert_eq!(Error::from_v03(getrandom03::Error::UNSUPPORTED), Error::UNSUPPORTED);
        assert_eq!(Error::from_v03(getrandom03::Error::new_custom(7)), Error::UNEXPECTED);
    }
}
