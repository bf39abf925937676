//! A server under test: a child process that prints `READY <port>` once listening and
//! then obeys line commands on stdin:
//!
//!   push <M> <rate> <size>   M ai_progress messages to session "bench" (rate 0 = flat out,
//!                            else paced at <rate> per second), payload <size> bytes:
//!                            {"t":<unix µs>,"i":<index>,"pad":"xx…"}
//!                            -> `PUSHED <M> <elapsed_ns> <retries>`
//!   cost <K> <size>          K notify calls with one prebuilt payload, timed around the loop
//!                            -> `COST <K> <elapsed_ns> <errors> [<calling thread CPU ns>]`
//!   quit                     stop the server and exit
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub struct Host {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pub port: u16,
}

impl Host {
    pub fn spawn(
        name: &str,
        argv: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Host, String> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", argv.join(" ")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut host = Host {
            name: name.to_string(),
            child,
            stdin,
            lines,
            port: 0,
        };
        let ready = host
            .expect("READY", Duration::from_secs(60))
            .ok_or_else(|| format!("{name} did not print READY (see {})", log.display()))?;
        host.port = ready
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{name}: bad READY line {ready:?}"))?;
        Ok(host)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("{}: stdin: {e}", self.name))
    }

    /// The next stdout line starting with `prefix`; other lines are ignored.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Asks the host to stop; kills it if it has not exited within `grace`.
    pub fn quit(mut self, grace: Duration) {
        let _ = self.send("quit");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
