//! Server resource usage from /proc: CPU time (utime+stime of /proc/<pid>/stat, all
//! threads) and resident memory (VmRSS/VmHWM of /proc/<pid>/status).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// utime + stime in nanoseconds (clock-tick resolution, usually 10 ms).
    pub cpu_ns: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_sec();
    let cpu_ns = (utime + stime) * (1_000_000_000 / ticks);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Sample {
        cpu_ns,
        ..Sample::default()
    };
    for line in status.lines() {
        let value = |l: &str| -> u64 {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            s.rss_kb = value(line);
        } else if line.starts_with("VmHWM:") {
            s.hwm_kb = value(line);
        } else if line.starts_with("Threads:") {
            s.threads = value(line);
        }
    }
    Some(s)
}

/// Samples the summed RSS of some processes (the nodes of one server) every `period` in
/// the background and keeps the peak.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl PeakRss {
    pub fn start(pids: &[u32], period: Duration) -> PeakRss {
        let pids = pids.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let total: Option<u64> =
                    pids.iter().map(|&pid| sample(pid).map(|x| x.rss_kb)).sum();
                if let Some(rss_kb) = total {
                    p.fetch_max(rss_kb, Ordering::Relaxed);
                }
                std::thread::sleep(period);
            }
        });
        PeakRss {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU time this process (the load client) has used, in ns.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
