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
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`, and CLOCK_PROCESS_CPUTIME_ID a clock that
    // every Linux has; the call writes only `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) };
    assert_eq!(
        rc, 0,
        "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) fails only on a bad clock id"
    );
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
