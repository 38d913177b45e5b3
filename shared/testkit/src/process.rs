//! The service binaries run as child processes (signals, exit codes, logs).

/// A service binary running as a child process, its output captured.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
    output: Output,
    pub addr: std::net::SocketAddr,
}

impl Process {
    /// Starts `binary` with `env` (and `NO_COLOR`), waits for its
    /// `<name> listening addr=...` log line and returns with its address
    /// (listen on port 0 and let the process tell).
    pub async fn start(
        binary: &std::path::Path,
        args: &[&str],
        env: &[(&str, String)],
        name: &str,
    ) -> Self {
        let (child, output) = spawn_child(binary, args, env);
        wait_listening(child, output, name).await
    }

    /// Starts one process per environment at the same moment (all are
    /// spawned before any is waited for: replicas racing on an empty
    /// database), then waits for each to listen.
    pub async fn start_together(
        binary: &std::path::Path,
        envs: &[Vec<(&str, String)>],
        name: &str,
    ) -> Vec<Self> {
        let children: Vec<_> = envs
            .iter()
            .map(|env| spawn_child(binary, &[], env))
            .collect();
        let mut started = Vec::with_capacity(children.len());
        for (child, output) in children {
            started.push(wait_listening(child, output, name).await);
        }
        started
    }

    /// The process id (for /proc readings).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Its Prometheus metrics, from the address it logged for them (started
    /// with `METRICS_ADDR=127.0.0.1:0`).
    pub async fn metrics(&self) -> String {
        let log = self.output();
        let addr: std::net::SocketAddr = match log
            .lines()
            .find(|l| l.contains("metrics on /metrics"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.parse().ok())
        {
            Some(addr) => addr,
            None => panic!("no metrics address in the log:\n{log}"),
        };
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let text =
            String::from_utf8_lossy(&crate::http1(addr, request.into_bytes()).await).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text
    }

    /// Kills the process outright (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `limit` for the process to exit; its status, or `None`.
    pub async fn wait_for_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Output = std::sync::Arc<std::sync::Mutex<String>>;

/// Spawns `binary` with its output captured.
fn spawn_child(
    binary: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (std::process::Child, Output) {
    use std::{io::Read, process::Stdio};
    let mut command = std::process::Command::new(binary);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let output = Output::default();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout"))),
        Box::new(child.stderr.take().unwrap_or_else(|| panic!("no stderr"))),
    ];
    for mut pipe in pipes {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut out) = output.lock() {
                    out.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    (child, output)
}

/// Waits for the `<name> listening addr=...` line; panics with the output
/// when the process exits first or takes longer than 30 s.
async fn wait_listening(mut child: std::process::Child, output: Output, name: &str) -> Process {
    let needle = format!("{name} listening");
    let started = std::time::Instant::now();
    loop {
        let text = output.lock().map(|o| o.clone()).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains(&needle))
            .find_map(|l| l.split("addr").nth(1))
            .and_then(|rest| {
                rest.trim_start_matches(['=', '"', ':', ' '])
                    .split(['"', ' ', ',', '}'])
                    .next()
                    .and_then(|a| a.parse().ok())
            })
        {
            return Process {
                child,
                output,
                addr,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status} before listening:\n{text}");
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            panic!("{name} did not start listening within 30 s:\n{text}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of one series in a scrape, named with its labels exactly as
/// exposed (`name{label="value",...}`), or `None` when it is absent.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Runs `binary` to its end (a subcommand, or a start that fails): its exit
/// status and everything it wrote.
pub fn run_to_end(
    binary: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Makes 20 calls at once, then one more once 5 s have passed, with tokens
/// whose `kid` nobody published (each from `refused`, which answers the
/// code): every call is UNAUTHENTICATED, and `process`'s counter `series`
/// of key fetches reads 1 after the burst and 2 after the last call (one
/// fetch per 5 s window, however many unknown kids arrive).
pub async fn one_key_fetch_per_window<F>(process: &Process, series: &str, refused: impl Fn() -> F)
where
    F: std::future::Future<Output = tonic::Code> + Send + 'static,
{
    let burst = crate::concurrently((0..20).map(|_| refused())).await;
    // The service's window opened at its first fetch, during the burst:
    // 5 s after the burst has ended it is surely over, however slow the
    // machine.
    let window = tokio::time::Instant::now();
    assert!(
        burst.iter().all(|c| *c == tonic::Code::Unauthenticated),
        "{burst:?}"
    );
    let fetches = sample(&process.metrics().await, series);
    assert_eq!(fetches, Some(1.0), "20 unknown kids at once, one fetch");
    tokio::time::sleep_until(window + std::time::Duration::from_millis(5100)).await;
    assert_eq!(refused().await, tonic::Code::Unauthenticated);
    let fetches = sample(&process.metrics().await, series);
    assert_eq!(fetches, Some(2.0), "a fetch per window");
}
