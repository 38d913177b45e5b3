//! CPU time spent by the servers under test, to tell what a call costs the
//! server apart from what it costs the load generator.
//!
//! The service binaries are child processes: their time is the process's
//! own (threads that ended included). The yardsticks run in this process,
//! where the load generator runs on threads named `load` (and the main
//! thread, `bench`); every other thread is a yardstick's: its runtime's
//! (`stack`) and the ones sqlx starts for each SQLite connection. Threads of
//! this process that end between two readings take their time with them, so
//! for the yardsticks this is a lower bound.

use std::{sync::OnceLock, time::Duration};

/// Linux reports thread times in USER_HZ ticks, fixed at 100 per second.
const TICK: Duration = Duration::from_millis(10);

/// The service processes, set once they are started.
static PROCESSES: OnceLock<Vec<u32>> = OnceLock::new();

/// Counts the time of these processes from now on.
pub(crate) fn count_processes(pids: Vec<u32>) {
    let _ = PROCESSES.set(pids);
}

/// User plus system time of the servers so far: the service processes and
/// this process's yardstick threads.
pub(crate) fn stack_time() -> Duration {
    let children: u64 = PROCESSES
        .get()
        .into_iter()
        .flatten()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| ticks(&stat).map(|(_, t)| t))
        .sum();
    let own: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let (name, t) = ticks(&stat)?;
            (name != "load" && name != "bench").then_some(t)
        })
        .sum();
    TICK * u32::try_from(children + own).unwrap_or(u32::MAX)
}

/// The name and user plus system ticks of a `stat` line.
fn ticks(stat: &str) -> Option<(&str, u64)> {
    // "pid (name) state ppid ...": the name may hold spaces.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields of the line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}
