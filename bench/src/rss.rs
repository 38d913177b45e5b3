//! Peak memory during 16 concurrent uploads of 16 MiB.
//!
//! The stack runs in this process, so the figure is this process's peak
//! resident set (VmHWM in /proc/self/status): the stack plus the load
//! generator, which makes each chunk as it is sent and so holds a few
//! 64 KiB chunks, not the documents. The peak is reset just before the
//! uploads (writing 5 to /proc/self/clear_refs), so earlier scenarios do not
//! count; where the kernel refuses that, the figure is the peak since start
//! and says so.

use std::time::{Duration, Instant};

use crate::{
    load::Failure,
    scenarios::{self, Clients, Seed},
};

pub(crate) const UPLOADS: usize = 16;
pub(crate) const DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Peak {
    /// Resident set just before the uploads, KiB.
    pub before_kib: u64,
    /// Highest resident set during them, KiB.
    pub peak_kib: u64,
    /// Whether the peak covers only the uploads (else: since start).
    pub reset: bool,
    pub uploaded: usize,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

pub(crate) async fn measure(clients: &Clients, seed: &Seed) -> Result<Peak, String> {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before_kib = status_kib("VmRSS")?;
    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let channel = clients.documents[i % clients.documents.len()].clone();
            let owner = seed.reader.clone();
            tokio::spawn(async move {
                scenarios::upload(channel, &owner, format!("large {i}"), DOCUMENT_BYTES, i).await
            })
        })
        .collect();
    let (mut uploaded, mut errors) = (0, Vec::new());
    for upload in uploads {
        match upload.await.map_err(|e| e.to_string())? {
            Ok(_) => uploaded += 1,
            Err(Failure::Status(s)) => errors.push(format!("{:?}: {}", s.code(), s.message())),
            Err(other) => errors.push(format!("{other:?}")),
        }
    }
    Ok(Peak {
        before_kib,
        peak_kib: status_kib("VmHWM")?,
        reset,
        uploaded,
        errors,
        elapsed: started.elapsed(),
    })
}

/// A `kB` line of /proc/self/status.
pub(crate) fn status_kib(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}
