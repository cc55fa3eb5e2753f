//! Transparent huge pages for the approximate indexes.
//!
//! An HNSW search visits thousands of vectors scattered over the whole
//! index (over half a gigabyte for a million segments). With 4 KiB
//! pages nearly every visit misses the TLB as well as the cache, and the
//! page walk that follows misses too; with 2 MiB pages those walks mostly
//! go. usearch maps its own memory (anonymous `mmap` arenas), so kino
//! cannot allocate it differently: once an index is built or loaded, it
//! asks the kernel to back the process's large anonymous mappings with
//! huge pages, `MADV_HUGEPAGE` for what faults in later and `MADV_COLLAPSE`
//! (Linux 6.1 and later) for what is there now. On a kernel with
//! transparent huge pages set to `never`, or one too old for a call, the
//! call fails and nothing changes: this is a speed-up, never a requirement.
//! Collapsing is given [`COLLAPSE_BUDGET`]: when free huge pages are scarce
//! the kernel has to reclaim or compact memory first, which took 7–9 s for
//! a million segments on a box whose memory hours of work had filled (a
//! cold start took 0.6 s without it), so what is left when the budget is
//! spent is only advised and left to `khugepaged`.
//! The caller decides whether to ask (`kino serve` reads `KINO_HUGE_PAGES`;
//! see [`crate::ShortlistConfig::huge_pages`]).

use std::time::{Duration, Instant};

/// Mappings smaller than this are left alone (the allocator's small
/// arenas, thread stacks): the index's arenas are tens to hundreds of MiB.
const MIN_BYTES: usize = 32 << 20;

/// How long [`advise`] may spend collapsing memory onto huge pages: it runs
/// before the shortlists are put to use, so this bounds what it adds to a
/// cold start.
pub const COLLAPSE_BUDGET: Duration = Duration::from_secs(2);

/// Memory collapsed in one call, so that the budget is checked often.
const COLLAPSE_STEP: usize = 64 << 20;

/// What [`advise`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HugePages {
    /// Bytes in the mappings advised to use huge pages.
    pub advised: usize,
    /// Bytes of those collapsed into huge pages now.
    pub collapsed: usize,
}

/// Asks for huge pages behind the resident parts of every anonymous
/// private mapping of at least 32 MiB in this process (see the module
/// docs). Resident memory does not grow.
/// Cheap to repeat: memory already on huge pages collapses at once.
/// Collapsing stops after [`COLLAPSE_BUDGET`].
pub fn advise() -> HugePages {
    advise_within(COLLAPSE_BUDGET)
}

/// [`advise`], collapsing for at most `budget` (the rest is only advised).
fn advise_within(budget: Duration) -> HugePages {
    let mut done = HugePages::default();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return done;
    };
    let deadline = Instant::now() + budget;
    for (start, len) in maps.lines().filter_map(large_anonymous) {
        advise_range(start, len, deadline, &mut done);
    }
    if done.advised > done.collapsed && Instant::now() >= deadline {
        tracing::info!(
            advised_mib = done.advised >> 20,
            collapsed_mib = done.collapsed >> 20,
            budget_s = budget.as_secs_f64(),
            "huge pages: the collapse ran out of time; the rest is left to khugepaged"
        );
    } else if done.advised > 0 {
        tracing::debug!(advised = done.advised, collapsed = done.collapsed, "huge pages advised");
    }
    done
}

/// `(start, length)` of a `/proc/self/maps` line naming a private,
/// writable, anonymous mapping of at least [`MIN_BYTES`].
fn large_anonymous(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    let (_offset, _device, inode) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || inode != "0" || !perms.starts_with("rw") || !perms.ends_with('p') {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
    (b > a && b - a >= MIN_BYTES).then_some((a, b - a))
}

/// Size of a transparent huge page (2 MiB on x86-64 and most arm64).
#[cfg(target_os = "linux")]
fn huge_page_bytes() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2 << 20)
}

/// Advises the huge-page-aligned stretches of a mapping whose pages are all
/// resident. Only those: collapsing a stretch with pages never touched
/// (the unused tail of an arena) would make them resident too. Collapses
/// [`COLLAPSE_STEP`] at a time until `deadline`.
#[cfg(target_os = "linux")]
fn advise_range(start: usize, len: usize, deadline: Instant, done: &mut HugePages) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let huge = huge_page_bytes();
    if page == 0 || huge < page || !huge.is_multiple_of(page) {
        return;
    }
    let (first, end) = (start.next_multiple_of(huge), (start + len) / huge * huge);
    if end <= first {
        return;
    }
    let per_huge = huge / page;
    let mut resident = vec![0u8; (end - first) / page];
    // SAFETY: [first, end) lies within a mapping of this process (read from
    // /proc/self/maps; if it was unmapped since, mincore fails with ENOMEM
    // and nothing is done) and `resident` holds one byte per page of it.
    if unsafe { libc::mincore(first as *mut libc::c_void, end - first, resident.as_mut_ptr()) } != 0 {
        return;
    }
    let full: Vec<bool> = resident
        .chunks_exact(per_huge)
        .map(|c| c.iter().all(|b| b & 1 == 1))
        .collect();
    let mut i = 0;
    while i < full.len() {
        if !full[i] {
            i += 1;
            continue;
        }
        let run = full[i..].iter().take_while(|f| **f).count();
        let (at, bytes) = (first + i * huge, run * huge);
        // SAFETY: as above; both advices keep the contents and permissions
        // of the range (they only change how it is backed).
        let ok =
            |at: usize, bytes: usize, advice| unsafe { libc::madvise(at as *mut libc::c_void, bytes, advice) == 0 };
        if ok(at, bytes, libc::MADV_HUGEPAGE) {
            done.advised += bytes;
            let mut from = at;
            while from < at + bytes && Instant::now() < deadline {
                let step = COLLAPSE_STEP.min(at + bytes - from);
                if !ok(from, step, libc::MADV_COLLAPSE) {
                    break;
                }
                done.collapsed += step;
                from += step;
            }
        }
        i += run;
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_range(_start: usize, _len: usize, _deadline: Instant, _done: &mut HugePages) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests below map 64 MiB each and read their mapping's sizes from
    /// `/proc/self/smaps`; run at once, two mappings can sit side by side
    /// and be merged into one, so one test would count the other's pages.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn only_large_private_writable_anonymous_mappings_are_taken() {
        let big = "7f0000000000-7f0004000000 rw-p 00000000 00:00 0 ";
        assert_eq!(large_anonymous(big), Some((0x7f00_0000_0000, 64 << 20)));
        let small = "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ";
        assert_eq!(large_anonymous(small), None);
        let file = "7f0000000000-7f0004000000 rw-p 00000000 fd:01 1234 /var/kino/rows.f32";
        assert_eq!(large_anonymous(file), None);
        let shared = "7f0000000000-7f0004000000 rw-s 00000000 00:01 0 /dev/zero (deleted)";
        assert_eq!(large_anonymous(shared), None);
        let read_only = "7f0000000000-7f0004000000 r--p 00000000 00:00 0 ";
        assert_eq!(large_anonymous(read_only), None);
        let heap = "55d000000000-55d004000000 rw-p 00000000 00:00 0 [heap]";
        assert_eq!(large_anonymous(heap), None);
    }

    /// A field of the `/proc/self/smaps` entry of the mapping holding `addr`.
    fn smaps_field(addr: usize, name: &str) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
                    return v.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[test]
    fn a_large_anonymous_mapping_is_advised_and_keeps_its_contents() {
        let _serial = one_at_a_time();
        // 64 MiB of the heap's big-allocation path (glibc maps it anonymously).
        let mut v = vec![0u8; 64 << 20];
        for (i, b) in v.iter_mut().enumerate().step_by(4096) {
            *b = (i / 4096) as u8;
        }
        let done = advise();
        if std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map(|s| !s.contains("[never]"))
            .unwrap_or(false)
        {
            // All of it but the unaligned ends.
            assert!(done.advised >= 60 << 20, "{done:?}");
            // The middle of it (the unaligned ends are left as they were).
            assert_eq!(smaps_field(v.as_ptr() as usize + (32 << 20), "THPeligible"), Some(1));
            if done.collapsed >= 60 << 20 {
                // Collapsed now, not left for khugepaged.
                let huge = smaps_field(v.as_ptr() as usize + (32 << 20), "AnonHugePages").unwrap_or(0);
                assert!(huge >= 2048, "{huge} kB on huge pages");
            }
        }
        assert!(v.iter().enumerate().step_by(4096).all(|(i, b)| *b == (i / 4096) as u8));
    }

    #[test]
    fn with_no_time_left_memory_is_advised_but_not_collapsed() {
        let _serial = one_at_a_time();
        let mut v = vec![0u8; 64 << 20];
        for (i, b) in v.iter_mut().enumerate().step_by(4096) {
            *b = (i / 4096) as u8;
        }
        let done = advise_within(Duration::ZERO);
        assert_eq!(done.collapsed, 0, "{done:?}");
        if std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map(|s| !s.contains("[never]"))
            .unwrap_or(false)
        {
            assert!(done.advised >= 60 << 20, "{done:?}");
        }
        assert!(v.iter().enumerate().step_by(4096).all(|(i, b)| *b == (i / 4096) as u8));
    }

    #[test]
    fn pages_never_touched_stay_out_of_memory() {
        let _serial = one_at_a_time();
        // 64 MiB mapped, 16 MiB of it written: an arena's unused tail.
        let mut v: Vec<u8> = Vec::with_capacity(64 << 20);
        v.resize(16 << 20, 7);
        let at = v.as_ptr() as usize;
        let before = smaps_field(at, "Rss").expect("the mapping is listed");
        advise();
        let after = smaps_field(at, "Rss").expect("the mapping is listed");
        // In kB: at most one huge page more (the one the written part ends in).
        assert!(after <= before + 2048, "resident {before} kB before, {after} kB after");
        assert!(after < 20 << 10, "{after} kB resident of a 64 MiB mapping");
        assert!(v.iter().all(|b| *b == 7));
    }
}
