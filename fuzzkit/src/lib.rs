//! Dev-only helpers of kino's hostile-input tests (issue #21): byte-level mutations of valid seed files as
//! proptest strategies, and the number of cases a property runs.
//!
//! A test takes a few valid files (the seeds) and a dictionary of the format's tokens, and checks its parser on
//! [`mutated`] copies: bits flipped, bytes and little-endian integers overwritten (length fields set to 0 or
//! 4 GiB), tokens inserted (also repeated thousands of times), ranges deleted or duplicated, the tail cut.
//!
//! Cases per property: `KINO_FUZZ_CASES` (default [`DEFAULT_CASES`]); `scripts/soak` runs a million in release
//! mode. Failures are not written to `proptest-regressions/`: a crash found becomes a named regression test
//! holding the input, which [`Bytes`]' `Debug` prints as a byte-string literal ready to paste.
//!
//! [`PeakAlloc`] (a test binary's global allocator) and [`largest_allocation`] check that a reader refuses a
//! length field of 4 GiB before allocating for it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per property when `KINO_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: u32 = 10_000;

/// Cases per property: `KINO_FUZZ_CASES`, else [`DEFAULT_CASES`].
///
/// # Panics
/// When `KINO_FUZZ_CASES` is set but not a whole number.
pub fn cases() -> u32 {
    match std::env::var("KINO_FUZZ_CASES") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("KINO_FUZZ_CASES={s:?}: expected a whole number of cases")),
        _ => DEFAULT_CASES,
    }
}

/// The proptest configuration of a hostile-input property: [`cases`] cases (`divisor` times fewer, at least
/// one, for properties whose cases are costly), no regression files.
pub fn config(divisor: u32) -> Config {
    Config {
        cases: (cases() / divisor.max(1)).max(1),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The system allocator, noting the largest single allocation each thread asks for; declare it as the
/// `#[global_allocator]` of a test binary that calls [`largest_allocation`].
pub struct PeakAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also serves the thread's own set-up and tear-down.
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation this thread made meanwhile (0 unless
/// [`PeakAlloc`] is the global allocator; allocations on other threads, e.g. rayon's, are not seen).
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LARGEST.with(|m| m.replace(0));
    let out = f();
    let peak = LARGEST.with(|m| m.replace(before.max(m.get())));
    (out, peak)
}

/// Test input bytes; `Debug` writes them as a byte-string literal (`b"WEBVTT\n\x00"`) so that a failing case
/// pastes straight into a regression test.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// One edit of a file. Positions are taken modulo the length of the data at the time of the edit.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips bit `bit` (0..8) of the byte at `at`.
    FlipBit { at: usize, bit: u8 },
    /// Overwrites the byte at `at`.
    SetByte { at: usize, value: u8 },
    /// Overwrites `width` bytes (1, 2, 4 or 8) at `at` with `value`, little-endian.
    SetInt { at: usize, width: u8, value: u64 },
    /// Inserts `bytes` repeated `times` times at `at`.
    Insert { at: usize, bytes: Vec<u8>, times: usize },
    /// Deletes up to `len` bytes from `at`.
    Delete { at: usize, len: usize },
    /// Inserts a copy of up to `len` bytes from `from` at `to`.
    Duplicate { from: usize, len: usize, to: usize },
    /// Cuts the data at `at`.
    Truncate { at: usize },
}

impl Mutation {
    /// Applies the edit to `data`.
    pub fn apply(&self, data: &mut Vec<u8>) {
        let n = data.len();
        match *self {
            Mutation::FlipBit { at, bit } if n > 0 => data[at % n] ^= 1 << (bit % 8),
            Mutation::SetByte { at, value } if n > 0 => data[at % n] = value,
            Mutation::SetInt { at, width, value } if n > 0 => {
                let at = at % n;
                let w = usize::from(width).min(8).min(n - at);
                data[at..at + w].copy_from_slice(&value.to_le_bytes()[..w]);
            }
            Mutation::Insert { at, ref bytes, times } => {
                let at = at % (n + 1);
                data.splice(at..at, bytes.iter().copied().cycle().take(bytes.len() * times));
            }
            Mutation::Delete { at, len } if n > 0 => {
                let at = at % n;
                data.drain(at..(at + len).min(n));
            }
            Mutation::Duplicate { from, len, to } if n > 0 => {
                let from = from % n;
                let chunk = data[from..(from + len).min(n)].to_vec();
                let to = to % (n + 1);
                data.splice(to..to, chunk);
            }
            Mutation::Truncate { at } => data.truncate(at % (n + 1)),
            _ => {}
        }
    }
}

/// A position: anywhere, or (half the time) among the first 64 bytes, where headers and length fields are.
fn position() -> impl Strategy<Value = usize> {
    prop_oneof![any::<usize>(), 0usize..64]
}

/// Integers that break length and count fields, or any integer.
fn interesting_int() -> impl Strategy<Value = u64> {
    const INTERESTING: &[u64] = &[
        0,
        1,
        2,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        1 << 32,
        i64::MAX as u64,
        u64::MAX,
    ];
    prop_oneof![3 => proptest::sample::select(INTERESTING), 1 => any::<u64>()]
}

/// One edit; inserted bytes come from `dictionary` (the format's tokens) or are random.
pub fn mutation(dictionary: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    assert!(!dictionary.is_empty(), "the dictionary needs a token");
    let token = prop_oneof![
        3 => proptest::sample::select(dictionary).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 1..16),
    ];
    let times = prop_oneof![8 => Just(1usize), 1 => 2usize..4096];
    prop_oneof![
        2 => (position(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (position(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => (position(), proptest::sample::select(&[1u8, 2, 4, 8][..]), interesting_int())
            .prop_map(|(at, width, value)| Mutation::SetInt { at, width, value }),
        4 => (position(), token, times).prop_map(|(at, bytes, times)| Mutation::Insert { at, bytes, times }),
        1 => (position(), prop_oneof![1usize..16, 1usize..4096]).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (position(), 1usize..256, position()).prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => position().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// A seed (picked from `seeds`) with one to eight [`mutation`]s applied.
pub fn mutated(seeds: Vec<Vec<u8>>, dictionary: &'static [&'static [u8]]) -> impl Strategy<Value = Bytes> {
    assert!(!seeds.is_empty(), "mutation needs a seed");
    let n = seeds.len();
    (0..n, proptest::collection::vec(mutation(dictionary), 1..=8)).prop_map(move |(i, edits)| {
        let mut data = seeds[i].clone();
        for m in &edits {
            m.apply(&mut data);
        }
        Bytes(data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds() {
        let mut d = b"abc".to_vec();
        Mutation::SetInt {
            at: 2,
            width: 8,
            value: u64::MAX,
        }
        .apply(&mut d);
        assert_eq!(d, b"ab\xff");
        Mutation::Insert {
            at: 5,
            bytes: b"xy".to_vec(),
            times: 2,
        }
        .apply(&mut d);
        assert_eq!(d, b"axyxyb\xff");
        Mutation::Duplicate { from: 5, len: 9, to: 0 }.apply(&mut d);
        assert_eq!(d, b"b\xffaxyxyb\xff");
        Mutation::Delete { at: 1, len: 100 }.apply(&mut d);
        assert_eq!(d, b"b");
        Mutation::Truncate { at: 1 }.apply(&mut d);
        assert_eq!(d, b"b");
        Mutation::Truncate { at: 0 }.apply(&mut d);
        for m in [
            Mutation::FlipBit { at: 3, bit: 9 },
            Mutation::Delete { at: 3, len: 1 },
            Mutation::Duplicate { from: 0, len: 1, to: 0 },
        ] {
            m.apply(&mut d);
        }
        assert!(d.is_empty());
        assert_eq!(format!("{:?}", Bytes(b"a\n\x00\"".to_vec())), r#"b"a\n\x00\"""#);
    }
}

/// A small seeded generator (SplitMix64) for the tests that pick their own
/// mutations or kill times and print the seed to replay them.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The seed in `var` if it is set, else one from the clock (print it, so a
/// failing run can be replayed).
pub fn seed_from(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    })
}
