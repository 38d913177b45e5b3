//! docverify's benchmark: a bare tonic server (the framework's ceiling on
//! this machine) in this process and the shipped service binaries as child
//! processes, on fresh databases, driven scenario by scenario by a tonic
//! load generator; one
//! table of requests/s, p50, p99 and errors, each rate beside the bare
//! server's, and the same figures as JSON.
//!
//! Exits non-zero when the stack cannot start or be seeded, or a scenario
//! completes no call at all (something is broken, not slow); missed
//! performance targets are reported, never fatal.
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

mod bare;
mod baseline;
mod cpu;
mod databases;
mod load;
mod report;
mod rss;
mod scenarios;
mod stack;
mod writes;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

use crate::{
    databases::Databases,
    load::{Measured, Plan},
    report::{Machine, Report, Row, Settings},
    scenarios::{Clients, Ctx},
    stack::Stack,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    /// The bare tonic server's empty unary handler.
    Echo,
    /// The same handler behind docverify's layers: document-service's
    /// health check (public: no token, no database).
    Health,
    /// GetCurrentUser: token check, then the user (cached while the
    /// revocation state is fresh).
    Me,
    /// ValidateToken: a signature check (remembered) and the revocation
    /// state in memory.
    Validate,
    /// GetDocument's read on a bare tonic server (no layers, no token):
    /// the ceiling of `get` and `me`.
    DbRead,
    /// GetDocument: token, policy, one indexed read.
    Get,
    /// ListDocuments' page of 50 on the bare server: the ceiling of `list`.
    DbPage,
    /// ListDocuments: a page of 50.
    List,
    /// An upload's statements straight to the database (no gRPC, no
    /// layer): the ceiling of `upload`.
    FreeWrite,
    /// UploadDocument of 4 KiB: write and audit event in one transaction;
    /// the audit log's sequencing lag measured meanwhile.
    Upload,
    /// VerifyDocument on fresh pending documents: state change and audit.
    Review,
    /// Login: argon2-bound.
    Login,
    /// `get` while other clients run `login` flat out.
    Storm,
    /// Peak RSS during 16 concurrent uploads of 16 MiB.
    Rss,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks docverify's service binaries against a bare tonic server, on fresh databases"
)]
struct Cli {
    /// Measured time per scenario, after the warm-up.
    #[arg(long, default_value = "5s", value_parser = shared::config::duration)]
    duration: Duration,

    /// Unmeasured time before each scenario's window.
    #[arg(long, default_value = "1s", value_parser = shared::config::duration)]
    warmup: Duration,

    /// HTTP/2 connections from the load generator to each server.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,

    /// Calls in flight at once (each worker sends its next call when the
    /// last one is answered), spread over the connections.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,

    /// Clients logging in flat out during `storm`.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    storm_logins: u32,

    /// A PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432): fresh
    /// databases are created there and dropped afterwards. Without it, SQLite
    /// files in a temporary folder.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,

    /// Scenarios to run, comma-separated; they run in the order listed here.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "echo,health,me,validate,db-read,get,db-page,list,free-write,upload,review,login,storm,rss"
    )]
    scenarios: Vec<Scenario>,

    /// Where the figures go as JSON [default: bench/results/latest-<sqlite|postgres>.json].
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The services' own log setup (RUST_LOG, default info), as in production.
    if let Err(e) = shared::telemetry::init(shared::config::LogFormat::Text, "bench") {
        return shared::server::exit(Err(e));
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> Result<ExitCode, String> {
    cli.scenarios.sort();
    cli.scenarios.dedup();
    let machine = Machine::detect();
    // Measured first, while the machine is otherwise idle.
    eprintln!("bench: timing argon2id");
    let argon2_hash = baseline::argon2_hash_time(1)?;
    let argon2_hash_parallel = baseline::argon2_hash_time(machine.cores)?;
    // The yardsticks get a runtime of their own, as if a process of their own.
    let stack_runtime = runtime("stack")?;
    let load_runtime = runtime("load")?;
    let report = load_runtime.block_on(bench(
        &cli,
        machine,
        [argon2_hash, argon2_hash_parallel],
        stack_runtime.handle().clone(),
    ))?;
    stack_runtime.shutdown_timeout(Duration::from_secs(5));
    print(&report.text());
    let path = cli.json.clone().unwrap_or_else(|| {
        let dialect = if cli.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("latest-{dialect}.json"))
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("bench: figures written to {}", path.display());
    let broken = report.broken();
    if broken.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench: no call succeeded in: {}", broken.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

#[expect(clippy::print_stdout, reason = "the report is this program's output")]
fn print(text: &str) {
    println!("{text}");
}

fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| format!("{name} runtime: {e}"))
}

async fn bench(
    cli: &Cli,
    machine: Machine,
    [argon2_hash, argon2_hash_parallel]: [Duration; 2],
    stack_runtime: tokio::runtime::Handle,
) -> Result<Report, String> {
    let dbs = Databases::create(cli.database_url.as_deref()).await?;
    let settings = Settings {
        database: dbs.description.clone(),
        warmup: cli.warmup,
        duration: cli.duration,
        connections: cli.connections as usize,
        concurrency: cli.concurrency as usize,
        storm_logins: cli.storm_logins as usize,
    };
    let mut report = Report {
        machine,
        settings,
        argon2_hash,
        argon2_hash_parallel,
        rows: Vec::new(),
        storm_logins: None,
        inserts: None,
        serial_inserts: None,
        peak: None,
    };
    let outcome = match Stack::start(&stack_runtime, &dbs).await {
        Ok(stack) => {
            let measured = measure(cli, &stack, &dbs, &mut report).await;
            let stopped = stack.stop().await;
            measured.and(stopped)
        }
        Err(e) => Err(e),
    };
    dbs.remove().await;
    outcome.map(|()| report)
}

/// Runs the chosen scenarios in order, adding a row to `report` for each.
async fn measure(
    cli: &Cli,
    stack: &Stack,
    dbs: &Databases,
    report: &mut Report,
) -> Result<(), String> {
    let connections = cli.connections as usize;
    let concurrency = cli.concurrency as usize;
    let storm_logins = cli.storm_logins as usize;
    let clients = Clients {
        echo: stack::connect(stack.echo, connections).await?,
        auth: stack::connect(stack.auth, connections).await?,
        documents: stack::connect(stack.documents, connections).await?,
        bare: stack::connect(stack.bare, connections).await?,
    };
    eprintln!("bench: seeding users and documents");
    let seed = scenarios::seed(&clients, concurrency.max(storm_logins)).await?;
    let ctx = Ctx {
        plan: Plan {
            warmup: cli.warmup,
            duration: cli.duration,
        },
        concurrency,
        clients,
        seed,
    };
    let cores = report.machine.cores;
    let mut free_write = None;
    for &scenario in &cli.scenarios {
        let name = scenario
            .to_possible_value()
            .map_or("?".to_owned(), |v| v.get_name().to_owned());
        eprintln!("bench: {name}");
        let (scenario, measured, note): (&'static str, Measured, String) = match scenario {
            Scenario::Echo => (
                "echo",
                scenarios::health_check(&ctx, &ctx.clients.echo).await?,
                "tonic-health Check on a server with no layers".to_owned(),
            ),
            Scenario::Health => (
                "health",
                scenarios::health_check(&ctx, &ctx.clients.documents).await?,
                "the same Check on document-service: its layers, no token, no database".to_owned(),
            ),
            Scenario::Me => (
                "me",
                scenarios::me(&ctx).await?,
                "GetCurrentUser: the token check and the user, both from memory (no database read)"
                    .to_owned(),
            ),
            Scenario::Validate => (
                "validate",
                scenarios::validate(&ctx).await?,
                "ValidateToken: the remembered signature check and the revocation state, no database read"
                    .to_owned(),
            ),
            Scenario::Get => (
                "get",
                scenarios::get(&ctx).await?,
                "GetDocument: token, policy, one indexed read".to_owned(),
            ),
            Scenario::DbRead => (
                "db-read",
                scenarios::db_read(&ctx).await?,
                "GetDocument's read on a bare tonic server: no layers, no token, no policy".to_owned(),
            ),
            Scenario::DbPage => (
                "db-page",
                scenarios::db_page(&ctx).await?,
                "ListDocuments' page of 50 on the bare server: no layers, no token, no page token"
                    .to_owned(),
            ),
            Scenario::List => (
                "list",
                scenarios::list(&ctx).await?,
                "ListDocuments: a page of 50".to_owned(),
            ),
            Scenario::FreeWrite => {
                let db = shared::db::Db::connect(&dbs.documents_url, &stack.document_pool)
                    .await
                    .map_err(|e| format!("free-write pool: {e}"))?;
                let measured = writes::free_write(&ctx, db.clone()).await?;
                // Unmeasured: the next scenario must not inherit a backlog.
                let drained = writes::drained(&db, Duration::from_secs(120)).await?;
                db.close().await;
                free_write = Some(measured.rps());
                (
                    "free-write",
                    measured,
                    format!(
                        "an upload's statements (row, chunk, audit event) in one transaction, through a pool like document-service's: no gRPC, no layer; the sequencer's backlog drained {:.1} s after the window",
                        drained.as_secs_f64()
                    ),
                )
            }
            Scenario::Upload => {
                let (measured, lag) = scenarios::upload_small(&ctx).await?;
                let mut note = format!(
                    "UploadDocument, 4 KiB: row, chunk, audit event in one transaction; sequencing lag (answer → leaf, via WatchAuditEvents) p50 {:.0} ms, p99 {:.0} ms over {} uploads{}",
                    lag.p50.as_secs_f64() * 1e3,
                    lag.p99.as_secs_f64() * 1e3,
                    lag.samples,
                    if lag.missing > 0 { format!(", {} never arrived", lag.missing) } else { String::new() }
                );
                if let Some(free) = free_write {
                    note += &format!("; {:.2}× free-write", measured.rps() / free);
                }
                if let Some(scratch) = &dbs.scratch_url {
                    eprintln!("bench: single-row INSERT transactions on PostgreSQL");
                    // From one client too: commits one after the other, as
                    // writers that queue on one row lock (the audit head) do.
                    let rates =
                        baseline::postgres_inserts(scratch, &[concurrency, 1], cli.duration)
                            .await?;
                    let [inserts, serial] = <[_; 2]>::try_from(rates)
                        .map_err(|_| "two insert rates expected".to_owned())?;
                    note += &format!(
                        "; the database alone: {:.0} single-row INSERT tx/s ({}, {} clients) → {:.0}%; from 1 client: {:.0}/s",
                        inserts.tps,
                        inserts.tool,
                        inserts.clients,
                        100.0 * measured.rps() / inserts.tps,
                        serial.tps
                    );
                    report.inserts = Some(inserts);
                    report.serial_inserts = Some(serial);
                }
                ("upload", measured, note)
            }
            Scenario::Review => {
                // Uploads flat out for twice the scenario's time: a review
                // costs about two thirds of an upload. Should they still run
                // out, the window ends there and the note says so.
                eprintln!("bench: seeding pending documents");
                let seeding = Plan {
                    warmup: Duration::ZERO,
                    duration: 2 * (cli.warmup + cli.duration),
                };
                let pending = scenarios::pending_documents(&ctx, seeding).await?;
                let seeded = pending.len();
                let measured = scenarios::review(&ctx, pending).await?;
                let mut note =
                    format!("VerifyDocument: state change + audit; {seeded} pending documents");
                if measured.ran_dry {
                    note += &format!(
                        "; they ran out: window {:.1} s",
                        measured.window.as_secs_f64()
                    );
                }
                ("review", measured, note)
            }
            Scenario::Login => {
                let measured = scenarios::login_flat_out(&ctx, concurrency).await?;
                let ceiling = report.login_ceiling();
                let note = format!(
                    "Login: argon2id bound; ceiling {cores} cores / {:.1} ms = {ceiling:.0}/s → {:.0}% (with {cores} hashing at once, one takes {:.1} ms)",
                    report.argon2_hash.as_secs_f64() * 1e3,
                    100.0 * measured.rps() / ceiling,
                    report.argon2_hash_parallel.as_secs_f64() * 1e3
                );
                ("login", measured, note)
            }
            Scenario::Storm => {
                let (mut get, logins) = scenarios::storm(&ctx, storm_logins).await?;
                // The stack's CPU went to the logins as much as to get.
                get.stack_cpu = Duration::ZERO;
                let alone = report
                    .rows
                    .iter()
                    .find(|r| r.scenario == "get")
                    .map(|r| r.measured.quantile_us(0.99));
                let mut note = format!(
                    "get while {storm_logins} clients log in flat out ({:.0} logins/s)",
                    logins.rps()
                );
                if let Some(alone) = alone {
                    note += &format!(
                        "; p99 alone {:.2} ms → {:.1}×",
                        alone as f64 / 1e3,
                        get.quantile_us(0.99) as f64 / alone.max(1) as f64
                    );
                }
                report.storm_logins = Some(logins);
                ("storm", get, note)
            }
            Scenario::Rss => {
                let services: Vec<_> = stack
                    .services
                    .iter()
                    .map(|s| (s.name, s.process.id(), s.idle_kib))
                    .collect();
                report.peak = Some(rss::measure(&ctx.clients, &ctx.seed, &services).await?);
                continue;
            }
        };
        let resident: Vec<String> = stack
            .services
            .iter()
            .map(|s| {
                let kib = rss::status_kib(s.process.id(), "VmRSS").unwrap_or_default();
                format!("{} {} MiB", s.name, kib / 1024)
            })
            .collect();
        eprintln!(
            "bench: {scenario}: {:.0} req/s, p99 {} µs, {} errors; RSS now {}",
            measured.rps(),
            measured.quantile_us(0.99),
            measured.error_count(),
            resident.join(", ")
        );
        report.rows.push(Row {
            scenario,
            measured,
            note,
        });
    }
    Ok(())
}
