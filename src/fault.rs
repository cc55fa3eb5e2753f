//! Named fault points for the reliability tests: with `KINO_FAULT=<point>`
//! set, the process kills itself with SIGKILL when it reaches that point,
//! exactly as `kill -9` from outside would at that moment (no destructor
//! runs, nothing is flushed), so a test can place a kill where a timer
//! could not. Without the variable a point costs one check of a value read once.
//!
//! Points: `train-step:<N>` (`kino train`, after optimiser step N of the
//! projection, before that step's checkpoint is written),
//! `train-stage2-step:<N>` (after step N of stage 2, the grid and the
//! cross-attention).

/// Kills this process with SIGKILL when `KINO_FAULT` names the point
/// `name()` returns (built only when the variable is set; it is read once).
pub fn point(name: impl FnOnce() -> String) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(wanted) = ARMED.get_or_init(|| std::env::var("KINO_FAULT").ok()) else {
        return;
    };
    let point = name();
    if *wanted == point {
        tracing::warn!(point, "KINO_FAULT: killing this process with SIGKILL");
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        // SIGKILL is not handled: this is not reached once it lands.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
