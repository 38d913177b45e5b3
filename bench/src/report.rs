//! The results: one table (a Markdown table, so that it pastes into the
//! README as it is), the targets judged against it, and the same
//! figures as JSON.

use std::{fmt::Write, time::Duration};

use serde_json::{Value, json};

use crate::{baseline::InsertRate, load::Measured, rss::Peak};

/// Targets from the issue (a 2-core machine, client and server on it).
const GET_VS_ECHO: f64 = 0.50;
const ME_VS_ECHO: f64 = 0.60;
const VALIDATE_VS_ECHO: f64 = 0.60;
const LOGIN_VS_ARGON2: f64 = 0.80;
const STORM_P99_FACTOR: f64 = 3.0;
const UPLOAD_VS_INSERTS: f64 = 0.50;
const PEAK_RSS_MIB: f64 = 200.0;
/// Issue 16's: the layers' cost, and each read against its own read on a
/// bare server (framework plus driver).
const HEALTH_VS_ECHO: f64 = 0.85;
const VS_OWN_BASELINE: f64 = 0.85;

#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_mib: u64,
}

impl Machine {
    pub(crate) fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            memory_mib: memory_kib / 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub database: String,
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: usize,
    pub concurrency: usize,
    pub storm_logins: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub scenario: &'static str,
    pub measured: Measured,
    pub note: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub machine: Machine,
    pub settings: Settings,
    /// One argon2id hash, alone and with one per core at once.
    pub argon2_hash: Duration,
    pub argon2_hash_parallel: Duration,
    pub rows: Vec<Row>,
    /// Logins per second while `storm` measured `get`.
    pub storm_logins: Option<Measured>,
    pub inserts: Option<InsertRate>,
    /// The same from one client: commits one at a time.
    pub serial_inserts: Option<InsertRate>,
    pub peak: Option<Peak>,
}

/// One target of the issue; `met` is `None` when this run did not measure it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub name: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

fn us(micros: u64) -> String {
    match micros {
        0..1_000 => format!("{micros} µs"),
        1_000..1_000_000 => format!("{:.2} ms", micros as f64 / 1e3),
        _ => format!("{:.2} s", micros as f64 / 1e6),
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

impl Report {
    /// A scenario's share of its own baseline's req/s: the same read on
    /// the bare server (`get` and `me` against `db-read`, `list` against
    /// `db-page`).
    fn vs_baseline(&self, row: &Row) -> Option<(&'static str, f64)> {
        let baseline = match row.scenario {
            "get" | "me" => "db-read",
            "list" => "db-page",
            _ => return None,
        };
        let base = self.row(baseline)?.rps();
        (base > 0.0).then(|| (baseline, row.measured.rps() / base))
    }

    fn row(&self, scenario: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario)
            .map(|r| &r.measured)
    }

    fn echo_rps(&self) -> Option<f64> {
        self.row("echo").map(Measured::rps).filter(|r| *r > 0.0)
    }

    /// cores / (time of one hash): logins per second if argon2 were all.
    pub(crate) fn login_ceiling(&self) -> f64 {
        self.machine.cores as f64 / self.argon2_hash.as_secs_f64()
    }

    /// Scenarios that did not complete a single call: a broken stack, not
    /// a slow one.
    pub(crate) fn broken(&self) -> Vec<&'static str> {
        self.rows
            .iter()
            .filter(|r| r.measured.ok == 0)
            .map(|r| r.scenario)
            .collect()
    }

    pub(crate) fn targets(&self) -> Vec<Target> {
        let clean = |m: &Measured| m.error_count() == 0;
        let vs_echo = |name: &'static str, scenario: &str, goal: f64| {
            let measured = self.row(scenario).zip(self.echo_rps());
            Target {
                name,
                goal: format!("≥ {} of echo's req/s", percent(goal)),
                measured: measured.map_or("not measured".to_owned(), |(m, echo)| {
                    percent(m.rps() / echo)
                }),
                met: measured.map(|(m, echo)| clean(m) && m.rps() / echo >= goal),
            }
        };
        let vs_baseline = |name: &'static str, scenario: &str, baseline: &'static str| {
            let measured = self.row(scenario).zip(self.row(baseline));
            Target {
                name,
                goal: format!("≥ {} of {baseline}'s req/s", percent(VS_OWN_BASELINE)),
                measured: measured.map_or(format!("not measured (needs {baseline})"), |(m, b)| {
                    percent(m.rps() / b.rps())
                }),
                met: measured
                    .map(|(m, b)| clean(m) && clean(b) && m.rps() / b.rps() >= VS_OWN_BASELINE),
            }
        };
        let login = self.row("login");
        let storm = self.row("storm").zip(self.row("get"));
        let upload = self.row("upload").zip(self.inserts.as_ref());
        vec![
            vs_echo("health", "health", HEALTH_VS_ECHO),
            vs_echo("get", "get", GET_VS_ECHO),
            vs_baseline("get vs db-read", "get", "db-read"),
            vs_baseline("list vs db-page", "list", "db-page"),
            vs_echo("me", "me", ME_VS_ECHO),
            vs_baseline("me vs db-read", "me", "db-read"),
            vs_echo("validate", "validate", VALIDATE_VS_ECHO),
            Target {
                name: "login",
                goal: format!(
                    "≥ {} of cores / argon2id hash = {} / {:.1} ms = {:.0}/s",
                    percent(LOGIN_VS_ARGON2),
                    self.machine.cores,
                    self.argon2_hash.as_secs_f64() * 1e3,
                    self.login_ceiling()
                ),
                measured: login.map_or("not measured".to_owned(), |m| {
                    format!(
                        "{:.0}/s = {}",
                        m.rps(),
                        percent(m.rps() / self.login_ceiling())
                    )
                }),
                met: login.map(|m| clean(m) && m.rps() >= LOGIN_VS_ARGON2 * self.login_ceiling()),
            },
            Target {
                name: "storm",
                goal: format!("get's p99 in the login storm ≤ {STORM_P99_FACTOR}× its p99 alone"),
                measured: storm.map_or(
                    "not measured (needs get and storm)".to_owned(),
                    |(s, g)| {
                        format!(
                            "{} vs {} = {:.1}×",
                            us(s.quantile_us(0.99)),
                            us(g.quantile_us(0.99)),
                            s.quantile_us(0.99) as f64 / g.quantile_us(0.99).max(1) as f64
                        )
                    },
                ),
                met: storm.map(|(s, g)| {
                    clean(s)
                        && s.quantile_us(0.99) as f64
                            <= STORM_P99_FACTOR * g.quantile_us(0.99) as f64
                }),
            },
            Target {
                name: "upload (PostgreSQL)",
                goal: format!(
                    "≥ {} of single-row INSERT transactions/s at the same concurrency",
                    percent(UPLOAD_VS_INSERTS)
                ),
                measured: upload.map_or("not measured (PostgreSQL only)".to_owned(), |(u, i)| {
                    format!(
                        "{:.0}/s vs {:.0}/s ({}, {} clients) = {}",
                        u.rps(),
                        i.tps,
                        i.tool,
                        i.clients,
                        percent(u.rps() / i.tps)
                    )
                }),
                met: upload.map(|(u, i)| clean(u) && u.rps() >= UPLOAD_VS_INSERTS * i.tps),
            },
            Target {
                name: "peak RSS",
                goal: format!(
                    "< {PEAK_RSS_MIB:.0} MiB during {} concurrent uploads of {} MiB",
                    crate::rss::UPLOADS,
                    crate::rss::DOCUMENT_BYTES >> 20
                ),
                measured: self.peak.as_ref().map_or("not measured".to_owned(), |p| {
                    format!(
                        "{:.0} MiB, both services (before: {:.0} MiB, idle: {:.0} MiB{})",
                        mib(p.peak_kib()),
                        mib(p.before_kib()),
                        mib(p.idle_kib()),
                        if p.reset { "" } else { "; peak since start" }
                    )
                }),
                met: self
                    .peak
                    .as_ref()
                    .map(|p| p.errors.is_empty() && mib(p.peak_kib()) < PEAK_RSS_MIB),
            },
        ]
    }

    /// The machine, the settings, the table, errors, peak RSS and targets.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(
            out,
            "machine: {} cores, {}, {} MiB RAM\ndatabase: {}\nload: {} connections per server, {} calls in flight, {:?} warm-up + {:?} measured per scenario; storm: {} login clients\nargon2id hash (median): {:.1} ms alone, {:.1} ms with one per core at once\n",
            m.cores,
            m.cpu,
            m.memory_mib,
            s.database,
            s.connections,
            s.concurrency,
            s.warmup,
            s.duration,
            s.storm_logins,
            self.argon2_hash.as_secs_f64() * 1e3,
            self.argon2_hash_parallel.as_secs_f64() * 1e3
        );
        let _ = writeln!(
            out,
            "| scenario | req/s | p50 | p99 | errors | vs echo | vs own baseline | server CPU/call | note |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for row in &self.rows {
            let r = &row.measured;
            let errors = r.error_count();
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {}{} | {} | {} | {} | {} |",
                row.scenario,
                r.rps(),
                us(r.quantile_us(0.5)),
                us(r.quantile_us(0.99)),
                errors,
                if errors > 0 { " ⚠" } else { "" },
                self.echo_rps()
                    .map_or("-".to_owned(), |echo| percent(r.rps() / echo)),
                self.vs_baseline(row)
                    .map_or("-".to_owned(), |(b, share)| format!(
                        "{} of {b}",
                        percent(share)
                    )),
                Some(r.stack_cpu_per_call_us())
                    .filter(|cpu| *cpu > 0.0)
                    .map_or("-".to_owned(), |cpu| format!("{cpu:.0} µs")),
                row.note
            );
        }
        for row in self.rows.iter().filter(|r| r.measured.error_count() > 0) {
            for (kind, e) in &row.measured.errors {
                let _ = writeln!(
                    out,
                    "\nERRORS in {}: {} × {kind}, e.g. \"{}\"",
                    row.scenario, e.count, e.sample
                );
            }
        }
        if let Some(p) = &self.peak {
            let each: Vec<String> = p
                .processes
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.0} MiB (before {:.0}, idle {:.0})",
                        r.name,
                        mib(r.peak_kib),
                        mib(r.before_kib),
                        mib(r.idle_kib)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "\npeak RSS of the stack (the service processes' peaks added up): {:.0} MiB during {}/{} uploads of {} MiB in {:.1} s: {}{}",
                mib(p.peak_kib()),
                p.uploaded,
                crate::rss::UPLOADS,
                crate::rss::DOCUMENT_BYTES >> 20,
                p.elapsed.as_secs_f64(),
                each.join("; "),
                p.errors.first().map_or(String::new(), |e| format!(
                    "; ERRORS: {}, e.g. {e}",
                    p.errors.len()
                ))
            );
        }
        let _ = writeln!(out, "\ntargets:");
        for t in self.targets() {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            };
            let _ = writeln!(
                out,
                "  {verdict:<6} {}: {} (goal {})",
                t.name, t.measured, t.goal
            );
        }
        out
    }

    pub(crate) fn json(&self) -> Value {
        let measured = |m: &Measured| {
            json!({
                "requests": m.ok,
                "rps": m.rps(),
                "p50_us": m.quantile_us(0.5),
                "p90_us": m.quantile_us(0.9),
                "p99_us": m.quantile_us(0.99),
                "max_us": m.histogram.max(),
                "errors": m.error_count(),
                "error_kinds": m.errors.iter().map(|(k, e)| json!({
                    "kind": k, "count": e.count, "sample": e.sample,
                })).collect::<Vec<_>>(),
                "window_s": m.window.as_secs_f64(),
                "stack_cpu_per_call_us": m.stack_cpu_per_call_us(),
                "ran_dry": m.ran_dry,
            })
        };
        let s = &self.settings;
        let inserts: Vec<Value> = [&self.inserts, &self.serial_inserts]
            .into_iter()
            .flatten()
            .map(|i| json!({ "tps": i.tps, "clients": i.clients, "tool": i.tool }))
            .collect();
        json!({
            "machine": {
                "cores": self.machine.cores,
                "cpu": self.machine.cpu,
                "memory_mib": self.machine.memory_mib,
            },
            "settings": {
                "database": s.database,
                "warmup_s": s.warmup.as_secs_f64(),
                "duration_s": s.duration.as_secs_f64(),
                "connections": s.connections,
                "concurrency": s.concurrency,
                "storm_logins": s.storm_logins,
            },
            "argon2_hash_ms": self.argon2_hash.as_secs_f64() * 1e3,
            "argon2_hash_parallel_ms": self.argon2_hash_parallel.as_secs_f64() * 1e3,
            "login_ceiling_per_s": self.login_ceiling(),
            "scenarios": self.rows.iter().map(|r| {
                let mut v = measured(&r.measured);
                v["scenario"] = json!(r.scenario);
                v["vs_echo"] = json!(self.echo_rps().map(|e| r.measured.rps() / e));
                if let Some((baseline, share)) = self.vs_baseline(r) {
                    v["vs_baseline"] = json!({ "baseline": baseline, "share": share });
                }
                v["note"] = json!(r.note);
                v
            }).collect::<Vec<_>>(),
            "storm_logins": self.storm_logins.as_ref().map(measured),
            "postgres_inserts": inserts,
            "peak_rss": self.peak.as_ref().map(|p| json!({
                "peak_mib": mib(p.peak_kib()),
                "before_mib": mib(p.before_kib()),
                "idle_mib": mib(p.idle_kib()),
                "processes": p.processes.iter().map(|r| json!({
                    "name": r.name,
                    "peak_mib": mib(r.peak_kib),
                    "before_mib": mib(r.before_kib),
                    "idle_mib": mib(r.idle_kib),
                })).collect::<Vec<_>>(),
                "peak_covers_only_the_uploads": p.reset,
                "uploads_ok": p.uploaded,
                "errors": p.errors,
                "elapsed_s": p.elapsed.as_secs_f64(),
            })),
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name, "goal": t.goal, "measured": t.measured, "met": t.met,
            })).collect::<Vec<_>>(),
        })
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
