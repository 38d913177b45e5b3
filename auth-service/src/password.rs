//! Password hashing (argon2id, m = 19456 KiB, t = 2, p = 1: the OWASP
//! minimum) on a pool of its own, off the async runtime.
//!
//! Each hash is ~15 ms of pure CPU and 19 MiB of memory. On a runtime worker
//! it would stall every other RPC on that worker; on `spawn_blocking`'s
//! threads (up to 512) each thread's allocator arena would keep its own
//! 19 MiB after a login storm (measured: 2.9 GB resident). So a fixed set
//! of threads, one per core by default, takes hashes from a queue: every core
//! busy, no more. Each thread allocates its argon2 working memory once and
//! hashes in it ever after, so memory is exactly the threads' count times
//! 19 MiB: allocating and freeing it per hash left glibc's arenas holding
//! about 150 MiB more after a few dozen hashes (measured in the benchmark),
//! and cost the page faults of 19 MiB on every hash. Unknown emails are
//! verified against a dummy hash so that their timing matches a wrong
//! password.
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
    cell::RefCell,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
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
            .run(move || verify_blocking(password.expose().as_bytes(), &phc))
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

/// The salt's length: the argon2 crate's default, 128 bits.
const SALT_BYTES: usize = 16;

thread_local! {
    /// A hashing thread's argon2 working memory, kept between hashes.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 with `params` in this thread's working memory.
fn argon2_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    MEMORY.with_borrow_mut(|memory| {
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

/// A PHC string of argon2id with the default parameters and a fresh salt,
/// the same as `Argon2::default().hash_password` makes.
fn hash_blocking(password: &[u8]) -> Result<String> {
    let internal = |e: &dyn std::fmt::Display| Error::internal(e.to_string());
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(Error::internal)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon2, &params, password, &salt, &mut out).map_err(|e| internal(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| internal(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| internal(&e))?),
        hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc` (of any argon2 variant
/// and parameters), compared in constant time as `Output` does.
fn verify_blocking(password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(hash.algorithm.as_str());
    let version = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&hash))
    else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    argon2_into(&argon2, &params, password, salt.as_ref(), &mut out).is_ok()
        && Output::new(&out).is_ok_and(|computed| computed == *expected)
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    /// Hashes made in reused memory are the standard PHC strings: the
    /// argon2 crate's own verifier accepts them, and ours accepts its
    /// hashes, each refusing another password, several times on one thread
    /// (the memory holds the previous hash's blocks).
    #[test]
    fn hashes_in_reused_memory_are_standard_argon2id() {
        for round in 0..3 {
            let password = format!("orchid harbour velvet {round}");
            let ours = hash_blocking(password.as_bytes()).expect("hashed");
            assert!(
                ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
                "{ours}"
            );
            let parsed = PasswordHash::new(&ours).expect("a PHC string");
            let standard = Argon2::default();
            assert!(
                standard
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            );
            assert!(
                standard
                    .verify_password(b"another password", &parsed)
                    .is_err()
            );

            let theirs = standard
                .hash_password(password.as_bytes())
                .expect("hashed")
                .to_string();
            assert!(verify_blocking(password.as_bytes(), &theirs));
            assert!(!verify_blocking(b"another password", &theirs));
            assert!(verify_blocking(password.as_bytes(), &ours));
        }
        // Other parameters (a smaller m) and variants verify too.
        let params = Params::new(64, 1, 1, None).expect("valid");
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"pw")
            .expect("hashed")
            .to_string();
        assert!(verify_blocking(b"pw", &argon2i));
        assert!(!verify_blocking(b"pW", &argon2i));
        for junk in [
            "",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
            "plain",
        ] {
            assert!(!verify_blocking(b"pw", junk), "{junk}");
        }
    }
}
