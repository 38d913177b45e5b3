//! Peak memory during 16 concurrent uploads of 16 MiB.
//!
//! The figure is each service process's peak resident set (VmHWM in
//! /proc/<pid>/status) and their sum, the stack's: an upper bound of the
//! two processes' peak together. The peaks are reset just before the
//! uploads (writing 5 to /proc/<pid>/clear_refs), so earlier scenarios do
//! not count; where the kernel refuses that, the figure is the peak since
//! start and says so. Each process's resident set once it first answered,
//! before any load, is its idle figure.

use std::time::{Duration, Instant};

use crate::{
    load::Failure,
    scenarios::{self, Clients, Seed},
};

/// One service process's resident set, KiB.
#[derive(Debug, Clone)]
pub(crate) struct Resident {
    pub name: &'static str,
    /// Once it first answered, before any load.
    pub idle_kib: u64,
    /// Just before the uploads.
    pub before_kib: u64,
    /// The highest during them.
    pub peak_kib: u64,
}

pub(crate) const UPLOADS: usize = 16;
pub(crate) const DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Peak {
    pub processes: Vec<Resident>,
    /// Whether the peak covers only the uploads (else: since start).
    pub reset: bool,
    pub uploaded: usize,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl Peak {
    /// The stack's peak: the sum of its processes'.
    pub(crate) fn peak_kib(&self) -> u64 {
        self.processes.iter().map(|p| p.peak_kib).sum()
    }

    pub(crate) fn before_kib(&self) -> u64 {
        self.processes.iter().map(|p| p.before_kib).sum()
    }

    pub(crate) fn idle_kib(&self) -> u64 {
        self.processes.iter().map(|p| p.idle_kib).sum()
    }
}

/// `services`: each process's name, id and idle resident set (KiB).
pub(crate) async fn measure(
    clients: &Clients,
    seed: &Seed,
    services: &[(&'static str, u32, u64)],
) -> Result<Peak, String> {
    let mut reset = true;
    let mut before = Vec::with_capacity(services.len());
    for &(_, pid, _) in services {
        reset &= std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        before.push(status_kib(pid, "VmRSS")?);
    }
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
    let mut processes = Vec::with_capacity(services.len());
    for (&(name, pid, idle_kib), before_kib) in services.iter().zip(before) {
        processes.push(Resident {
            name,
            idle_kib,
            before_kib,
            peak_kib: status_kib(pid, "VmHWM")?,
        });
    }
    Ok(Peak {
        processes,
        reset,
        uploaded,
        errors,
        elapsed: started.elapsed(),
    })
}

/// A `kB` line of /proc/<pid>/status.
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in {path}"))
}
