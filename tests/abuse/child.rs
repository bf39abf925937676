//! The suite's side of a child host: spawn it, talk to it line by line (every answer
//! waited for with a bound), and read its memory from /proc.

use serde_json::Value;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

pub const MIB: u64 = 1024 * 1024;
/// An attack stops once the host's RSS passes this: the finding is shown by then, and the
/// machine is shared.
pub const RSS_ABORT: u64 = 1024 * MIB;

/// Longest wait for the child to start and for any one command's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Most of the child's stderr kept, enough for a panic message and backtrace.
const STDERR_KEPT: usize = 64 * 1024;

pub struct Child {
    process: tokio::process::Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    pub pid: u32,
    pub port: u16,
    /// Set once an answer did not come in time: a late answer would be taken for the next
    /// command's, so every later command fails with this instead.
    out_of_step: Option<String>,
}

/// How a child that was asked to start ended its first line.
pub enum Launch {
    Serving(Box<Child>),
    /// It printed something other than `port N` (e.g. `start-err …`) or nothing at all.
    Refused {
        first_line: Option<String>,
        stderr: String,
        status: Option<std::process::ExitStatus>,
    },
}

impl Child {
    /// Starts a host with `config` (the port is forced to 0); fails unless it serves.
    pub async fn serve(mut config: Value) -> Result<Child, String> {
        config["port"] = 0.into();
        match Child::launch(&["--serve", &config.to_string()]).await? {
            Launch::Serving(child) => Ok(*child),
            Launch::Refused {
                first_line,
                stderr,
                status,
            } => Err(format!(
                "host did not start: first line {first_line:?}, status {status:?}, stderr {:?}",
                tail(&stderr, 400)
            )),
        }
    }

    pub async fn launch(args: &[&str]) -> Result<Launch, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut process = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning the host: {e}"))?;
        let pid = process.id().ok_or("child has no pid")?;
        let stdin = process.stdin.take().ok_or("no stdin")?;
        let mut lines = BufReader::new(process.stdout.take().ok_or("no stdout")?).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = process.stderr.take().ok_or("no stderr")?;
        let kept = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut text = kept.lock().unwrap();
                if text.len() < STDERR_KEPT {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let first = tokio::time::timeout(ANSWER_WAIT, lines.next_line()).await;
        let first_line = match first {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("reading the host's stdout: {e}")),
            Err(_) => None,
        };
        if let Some(port) = first_line.as_deref().and_then(|l| l.strip_prefix("port ")) {
            let port = port
                .parse()
                .map_err(|_| format!("bad port line {first_line:?}"))?;
            return Ok(Launch::Serving(Box::new(Child {
                process,
                stdin,
                lines,
                stderr,
                pid,
                port,
                out_of_step: None,
            })));
        }
        let status = tokio::time::timeout(ANSWER_WAIT, process.wait())
            .await
            .ok()
            .and_then(Result::ok);
        // Let the stderr reader catch up with what the process wrote before it ended.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stderr = stderr.lock().unwrap().clone();
        Ok(Launch::Refused {
            first_line,
            stderr,
            status,
        })
    }

    /// Sends one command and returns its one-line answer.
    pub async fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.cmd_within(line, ANSWER_WAIT).await
    }

    pub async fn cmd_within(&mut self, line: &str, wait: Duration) -> Result<String, String> {
        let short: String = line.chars().take(60).collect();
        if let Some(why) = &self.out_of_step {
            return Err(format!("not sent {short:?}: {why}"));
        }
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| {
                format!(
                    "host gone before {short:?}: {e}; stderr {:?}",
                    self.stderr_tail()
                )
            })?;
        match tokio::time::timeout(wait, self.lines.next_line()).await {
            Ok(Ok(Some(answer))) => Ok(answer),
            Ok(Ok(None)) => Err(format!(
                "host exited during {short:?}; stderr {:?}",
                self.stderr_tail()
            )),
            Ok(Err(e)) => Err(format!("reading the host's answer to {short:?}: {e}")),
            Err(_) => {
                let why = format!("host did not answer {short:?} within {wait:?}");
                self.out_of_step = Some(why.clone());
                Err(why)
            }
        }
    }

    pub async fn stats(&mut self) -> Result<Value, String> {
        let line = self.cmd("stats").await?;
        serde_json::from_str(&line).map_err(|_| format!("stats answer is not JSON: {line:?}"))
    }

    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr.lock().unwrap(), 300)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Asks the host to exit and waits for it (bounded), killing it otherwise; returns
    /// its exit status (None if killed) and everything it wrote on stderr.
    pub async fn finish(mut self) -> (Option<std::process::ExitStatus>, String) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let status = match tokio::time::timeout(ANSWER_WAIT, self.process.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.process.kill().await;
                None
            }
        };
        // Let the stderr reader catch up with what the process wrote before it ended.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, self.stderr())
    }

    /// Waits for the process to end by itself (bounded).
    pub async fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(wait, self.process.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The next line the host prints without being asked (modes that print on their own).
    pub async fn next_line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}

/// Ends a host and records a failure if it panicked at any point of the attack.
pub async fn finish(o: &mut crate::outcome::Outcome, child: Child) {
    let (_, stderr) = child.finish().await;
    if let Some(line) = stderr.lines().find(|l| l.contains("panicked")) {
        o.fail(format!("the host panicked: {line}"));
    }
}

/// Resident memory of a process, from /proc/<pid>/status, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    /// The peak resident size since the process started (VmHWM).
    pub peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Memory {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Watches a child's RSS while an attack runs; trips when it passes `abort_at`, so the
/// attack stops before the machine (shared with others) runs short.
#[derive(Clone)]
pub struct Guard {
    tripped: Arc<AtomicBool>,
    max_rss: Arc<AtomicU64>,
}

impl Guard {
    pub fn watch(pid: u32, abort_at: u64) -> Guard {
        let guard = Guard {
            tripped: Arc::new(AtomicBool::new(false)),
            max_rss: Arc::new(AtomicU64::new(0)),
        };
        let g = guard.clone();
        tokio::spawn(async move {
            // Ends with the last clone besides this task's, or once tripped.
            while Arc::strong_count(&g.tripped) > 1 && !g.tripped() {
                let rss = Memory::of(pid).rss;
                g.max_rss.fetch_max(rss, Ordering::Relaxed);
                if rss > abort_at {
                    g.tripped.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        guard
    }

    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed)
    }
}

pub fn count(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or(0)
}

/// Polls the host's stats until `done` holds or `wait` passes; the last stats either way.
pub async fn stats_until(
    child: &mut Child,
    wait: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    loop {
        let stats = child.stats().await?;
        if done(&stats) || Instant::now() >= deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
