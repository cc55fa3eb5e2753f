//! Named fault points for the reliability tests.
//!
//! With `KINO_FAULT=<point>` set, the process kills itself with SIGKILL when
//! it reaches that point, exactly as `kill -9` from outside would at that
//! moment (no destructor runs, nothing is flushed), so a test can place a
//! kill where a timer could not. `KINO_FAULT=<point>@<n>` kills at the n-th
//! time the process reaches it (the first by default). Without the variable
//! a point costs one check of a value read once.
//!
//! Points:
//! - `segments-tx`: inside the transaction that replaces a video's
//!   segments, after the rows are written and before the commit (store);
//! - `stage-tx`: inside the transaction that stages a checkpoint's
//!   segments, before its commit (store);
//! - `model-download`: in the middle of a model file's download, after its
//!   first megabyte is written to the partial file (models);
//! - `train-step:<N>` (`kino train`, after optimiser step N of the
//!   projection, before that step's checkpoint is written) and
//!   `train-stage2-step:<N>` (after step N of stage 2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The armed point and the hit that fires it.
struct Armed {
    point: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("KINO_FAULT").ok().filter(|v| !v.is_empty())?;
            let (point, at) = match v.rsplit_once('@') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                point,
                at: at.max(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills this process with SIGKILL when `KINO_FAULT` names the point
/// `name()` returns and this is the hit it names (`name` is called only when
/// a point is armed).
pub fn point(name: impl FnOnce() -> String) {
    let Some(a) = armed() else {
        return;
    };
    if name() != a.point || a.hits.fetch_add(1, Ordering::SeqCst) + 1 != a.at {
        return;
    }
    eprintln!("KINO_FAULT: {}@{}: killing this process with SIGKILL", a.point, a.at);
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    // SIGKILL cannot be handled: this is not reached once it lands.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
