//! Password hashing (argon2id, m = 19456 KiB, t = 2, p = 1: the OWASP
//! minimum) on a pool of its own, off the async runtime.
//!
//! Each hash is ~15 ms of pure CPU and 19 MiB of memory. On a runtime worker
//! it would stall every other RPC on that worker; on `spawn_blocking`'s
//! threads (up to 512) each thread's allocator arena would keep its own
//! 19 MiB after a login storm (measured: 2.9 GB resident). So a fixed set
//! of threads, one per core by default, takes hashes from a queue: every core
//! busy, no more, and memory bounded by the number of threads. Unknown
//! emails are verified against a dummy hash so that their timing matches a
//! wrong password.
//!
//! The queue is bounded too: every hashing request first takes a
//! [`HashPermit`], and when as many are out as the queue holds, Login,
//! Register and ChangePassword answer RESOURCE_EXHAUSTED (with RetryInfo) at
//! once. A login flood therefore waits in a short queue instead of holding
//! every request slot of the service, and the RPCs that hash nothing
//! (GetCurrentUser, ValidateToken, ListSigningKeys) keep answering. The
//! permit is taken before the throttle claim, so an attempt refused for a
//! full queue never counts as a failed password check.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use shared::{Error, Reason, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::fields::{Email, NewPassword, Password};

/// zxcvbn score below which a password counts as commonly used or guessable
/// (3 = "safely unguessable": about 10^8 guesses and up).
const MIN_STRENGTH: u8 = 3;
/// How long a caller refused for a full queue is told to wait.
const BUSY_RETRY: Duration = Duration::from_millis(500);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub(crate) struct Hasher {
    queue: mpsc::Sender<Job>,
    workers: usize,
    dummy: Arc<str>,
    /// Places in the queue (running and waiting).
    permits: Arc<Semaphore>,
    capacity: usize,
}

/// A place in the hashing queue for one request (its strength check and
/// hash, or its verification); given back when dropped.
#[derive(Debug)]
pub(crate) struct HashPermit {
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Hasher {
    /// Starts `workers` hashing threads, with room for `capacity` hashing
    /// requests at once (running and queued); the threads end when the last
    /// `Hasher` clone is dropped.
    pub(crate) async fn new(workers: usize, capacity: usize) -> Result<Self> {
        let workers = workers.max(1);
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..workers {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job.
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job must not take its thread with it.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(Error::internal)?;
        }
        let mut hasher = Self {
            queue,
            workers,
            dummy: Arc::from(""),
            permits: Arc::new(Semaphore::new(capacity.max(1))),
            capacity: capacity.max(1),
        };
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(Error::internal)?;
        hasher.dummy = hasher.run(move || hash_blocking(&random)).await??.into();
        Ok(hasher)
    }

    /// A place in the queue, or RESOURCE_EXHAUSTED at once when it is full.
    pub(crate) fn reserve(&self) -> Result<HashPermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(HashPermit { _permit: permit }),
            Err(_) => Err(Error::ResourceExhausted {
                reason: Reason::PasswordHashingBusy,
                message: "too many password checks in progress; retry shortly",
                retry_after: Some(BUSY_RETRY),
            }),
        }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let queue = &shared::metrics::METRICS.argon2_queue;
        let (done, result) = oneshot::channel();
        let span = tracing::Span::current();
        queue.inc();
        let job: Job = Box::new(move || {
            shared::metrics::METRICS.argon2_queue.dec();
            let _ = done.send(span.in_scope(work));
        });
        if self.queue.send(job).is_err() {
            queue.dec();
            return Err(Error::internal("the password hashing threads are gone"));
        }
        result.await.map_err(Error::internal)
    }

    pub(crate) async fn hash(
        &self,
        _permit: &HashPermit,
        password: &NewPassword,
    ) -> Result<String> {
        let password = password.clone();
        self.run(move || hash_blocking(password.expose().as_bytes()))
            .await?
    }

    /// Whether `password` matches `phc`; with no stored hash (unknown email)
    /// the dummy hash is checked instead and the answer is always false.
    pub(crate) async fn verify(
        &self,
        _permit: &HashPermit,
        password: &Password,
        phc: Option<String>,
    ) -> Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let password = password.clone();
        let matched = self
            .run(move || {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), phc.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matched)
    }

    /// Refuses commonly used or easily guessed passwords (zxcvbn's
    /// dictionaries of common passwords, names and words, plus the user's
    /// own email and name).
    pub(crate) async fn check_strength(
        &self,
        _permit: &HashPermit,
        field: &'static str,
        password: &NewPassword,
        email: &Email,
        display_name: &str,
    ) -> Result<()> {
        let password = password.clone();
        let inputs = [
            email.as_str().to_owned(),
            email
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            display_name.to_owned(),
        ];
        let score = self
            .run(move || {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                u8::from(zxcvbn::zxcvbn(password.expose(), &inputs).score())
            })
            .await?;
        if score < MIN_STRENGTH {
            return Err(Error::invalid(
                field,
                "is too common or too easy to guess; a longer passphrase of unrelated words works well",
            ));
        }
        Ok(())
    }
}

fn hash_blocking(password: &[u8]) -> Result<String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(e.to_string()))
}
