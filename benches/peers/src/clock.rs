//! The clock the measurements read: by default the CPU time of this process, so that the time
//! other processes hold the CPU (a busy shared machine) is not counted; wall time on request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static WALL: AtomicBool = AtomicBool::new(false);
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Reads wall time from now on instead of CPU time.
pub fn use_wall_time() {
    EPOCH.get_or_init(Instant::now);
    WALL.store(true, Ordering::Relaxed);
}

/// What [`seconds`] measures, for the report.
pub fn describe() -> &'static str {
    if WALL.load(Ordering::Relaxed) {
        "wall time (--wall)"
    } else {
        "CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID: every thread of it, none of \
         the time other processes hold the CPU)"
    }
}

/// Seconds on the chosen clock, from an arbitrary origin.
pub fn seconds() -> f64 {
    if WALL.load(Ordering::Relaxed) {
        return EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64();
    }
    // The process's CPU time (CLOCK_PROCESS_CPUTIME_ID on Linux), through `cpu-time`.
    cpu_time::ProcessTime::try_now()
        .expect("the process CPU clock is readable")
        .as_duration()
        .as_secs_f64()
}
