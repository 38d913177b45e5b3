//! The load generator: `concurrency` tasks, each sending one call after the
//! other (a closed loop, so the server is never asked more than it can
//! take), for a warm-up and then a fixed measured window. A call counts when
//! it completes inside the window; its latency goes into an HDR histogram
//! (microseconds, 3 significant digits). Every failed call is counted,
//! warm-up included, by gRPC code with one message as a sample.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::cpu;

/// Longest latency the histogram tells apart (longer ones count as this).
const MAX_LATENCY_US: u64 = 600_000_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub warmup: Duration,
    pub duration: Duration,
}

/// Why a call did not count as a success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error status.
    Status(tonic::Status),
    /// The answer was not what the scenario expects.
    Wrong(String),
    /// The scenario has nothing left to send (no pending document left to
    /// review): the worker stops, and the window ends with the last one.
    Exhausted,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Status(status)
    }
}

/// One kind of error: how often, and what the first one said.
#[derive(Debug, Clone)]
pub(crate) struct ErrorKind {
    pub count: u64,
    pub sample: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Calls that succeeded inside the window.
    pub ok: u64,
    /// Every failed call, warm-up included, by kind.
    pub errors: BTreeMap<String, ErrorKind>,
    pub histogram: Histogram<u64>,
    /// The measured window: the planned duration, or less when the
    /// scenario ran out of work first.
    pub window: Duration,
    pub ran_dry: bool,
    /// CPU time the stack's threads spent during the planned window.
    pub stack_cpu: Duration,
}

impl Measured {
    pub(crate) fn rps(&self) -> f64 {
        let seconds = self.window.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    pub(crate) fn quantile_us(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    /// The stack's CPU time per successful call, in microseconds.
    pub(crate) fn stack_cpu_per_call_us(&self) -> f64 {
        if self.ok == 0 || self.ran_dry {
            return 0.0;
        }
        self.stack_cpu.as_secs_f64() * 1e6 / self.ok as f64
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| e.to_string())
}

/// Runs `call(worker, n)` from `concurrency` workers, where `worker` is the
/// worker's index (to pick a connection or a user) and `n` counts its calls.
pub(crate) async fn run<F, Fut>(plan: Plan, concurrency: usize, call: F) -> Result<Measured, String>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now() + plan.warmup;
    let end = start + plan.duration;
    let stack_cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = cpu::stack_time();
        tokio::time::sleep_until(end.into()).await;
        cpu::stack_time().saturating_sub(before)
    });
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let call = call.clone();
            let histogram = histogram();
            tokio::spawn(async move { work(&*call, worker, start, end, histogram?).await })
        })
        .collect();
    let mut total = Measured {
        ok: 0,
        errors: BTreeMap::new(),
        histogram: histogram()?,
        window: plan.duration,
        ran_dry: false,
        stack_cpu: Duration::ZERO,
    };
    let mut dry_at: Option<Instant> = None;
    for worker in workers {
        let done = worker
            .await
            .map_err(|e| format!("a load worker failed: {e}"))??;
        total.ok += done.ok;
        total
            .histogram
            .add(&done.histogram)
            .map_err(|e| e.to_string())?;
        for (kind, error) in done.errors {
            total
                .errors
                .entry(kind)
                .and_modify(|e| e.count += error.count)
                .or_insert(error);
        }
        if let Some(at) = done.dry_at {
            dry_at = Some(dry_at.map_or(at, |d| d.max(at)));
        }
    }
    total.stack_cpu = stack_cpu.await.map_err(|e| e.to_string())?;
    if let Some(at) = dry_at.filter(|at| *at < end) {
        total.ran_dry = true;
        total.window = at.saturating_duration_since(start);
    }
    Ok(total)
}

struct Worker {
    ok: u64,
    errors: BTreeMap<String, ErrorKind>,
    histogram: Histogram<u64>,
    /// When this worker found nothing left to do.
    dry_at: Option<Instant>,
}

async fn work<F, Fut>(
    call: &F,
    worker: usize,
    start: Instant,
    end: Instant,
    histogram: Histogram<u64>,
) -> Result<Worker, String>
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut done = Worker {
        ok: 0,
        errors: BTreeMap::new(),
        histogram,
        dry_at: None,
    };
    for n in 0.. {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let outcome = call(worker, n).await;
        let received = Instant::now();
        let (kind, sample) = match outcome {
            Ok(()) => {
                if received >= start && received < end {
                    done.ok += 1;
                    let micros = u64::try_from(received.duration_since(sent).as_micros())
                        .unwrap_or(u64::MAX);
                    done.histogram.saturating_record(micros.max(1));
                }
                continue;
            }
            Err(Failure::Exhausted) => {
                done.dry_at = Some(sent);
                break;
            }
            Err(Failure::Status(status)) => {
                (format!("{:?}", status.code()), status.message().to_owned())
            }
            Err(Failure::Wrong(message)) => ("unexpected answer".to_owned(), message),
        };
        done.errors
            .entry(kind)
            .and_modify(|e| e.count += 1)
            .or_insert(ErrorKind { count: 1, sample });
    }
    Ok(done)
}
