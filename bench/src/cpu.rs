//! CPU time spent by the stack's threads, to tell what a call costs the
//! server apart from what it costs the load generator in the same process.
//!
//! The load generator runs on threads named `load` (and the main thread,
//! `bench`); every other thread is the stack's: its runtime's (`stack`) and
//! the ones sqlx starts for each SQLite connection. Threads that end between
//! two readings take their time with them, so this is a lower bound.

use std::time::Duration;

/// Linux reports thread times in USER_HZ ticks, fixed at 100 per second.
const TICK: Duration = Duration::from_millis(10);

/// User plus system time of the stack's threads so far.
pub(crate) fn stack_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ticks: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // "tid (name) state ppid ...": the name may hold spaces.
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            if name == "load" || name == "bench" {
                return None;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are the 14th and 15th fields of the line.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum();
    TICK * u32::try_from(ticks).unwrap_or(u32::MAX)
}
