//! Connection limits (global and per IP) and the per-client message rate limit.

use crate::config::RateLimitConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counts open sockets, globally and per remote IP.
pub(crate) struct SocketLimits {
    max_total: usize,
    max_per_ip: usize,
    open: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a socket was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerIp,
}

/// Held for as long as a socket is open (HTTP, then WebSocket); releases on drop.
pub(crate) struct SocketSlot {
    /// `None` once handed to a holder that releases it itself (see [`SocketSlot::detach`]).
    limits: Option<Arc<SocketLimits>>,
    ip: IpAddr,
}

impl SocketLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(SocketLimits {
            max_total,
            max_per_ip,
            open: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<SocketSlot, Refusal> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max_total as u64 {
            return Err(Refusal::Total);
        }
        let count = per_ip.entry(ip).or_insert(0);
        if self.max_per_ip > 0 && *count >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(SocketSlot {
            limits: Some(Arc::clone(self)),
            ip,
        })
    }

    /// Gives back a slot taken for `ip` and detached from its guard.
    pub fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SocketSlot {
    /// Turns the guard into a duty: the caller, which keeps the limits and the address
    /// anyway, must call [`SocketLimits::release`] with them once. An open WebSocket
    /// connection holds its slot this way, without 32 bytes of its own for it.
    pub fn detach(mut self) -> IpAddr {
        self.limits = None;
        self.ip
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(limits) = self.limits.take() {
            limits.release(self.ip);
        }
    }
}

/// Violations are counted over this window (ms) before a client is closed.
const VIOLATION_WINDOW_MS: u64 = 10_000;

/// A token bucket for one client's messages. Every connection has one, so it keeps only
/// its own state (times as the server's milliseconds, not `Instant`s: 24 bytes, not
/// 40); the limits are the server's ([`RateLimitConfig`]), passed to each check, and a
/// limit of 0 messages per second accepts everything.
pub(crate) struct RateLimiter {
    tokens: f32,
    violations: u32,
    last_ms: u64,
    window_start_ms: u64,
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    /// Refuse this message with a `rate_limited` error.
    Refuse,
    /// Abuse goes on: close the client.
    Close,
}

impl RateLimiter {
    /// A full bucket at `now_ms` (the server's clock).
    pub fn new(limits: &RateLimitConfig, now_ms: u64) -> RateLimiter {
        RateLimiter {
            tokens: limits.burst as f32,
            violations: 0,
            last_ms: now_ms,
            window_start_ms: now_ms,
        }
    }

    pub fn check(&mut self, now_ms: u64, limits: &RateLimitConfig) -> Verdict {
        if limits.messages_per_second == 0 {
            return Verdict::Accept;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f32 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens =
            (self.tokens + elapsed * limits.messages_per_second as f32).min(limits.burst as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        if now_ms.saturating_sub(self.window_start_ms) > VIOLATION_WINDOW_MS {
            self.window_start_ms = now_ms;
            self.violations = 0;
        }
        self.violations += 1;
        if self.violations > limits.max_violations {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits_release_on_drop() {
        let limits = SocketLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = limits.acquire(a).unwrap();
        let _s2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::PerIp));
        let _s3 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refusal::Total));
        drop(s1);
        assert!(limits.acquire(a).is_ok());
    }

    #[test]
    fn a_detached_slot_counts_until_released() {
        let limits = SocketLimits::new(1, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        limits.acquire(a).unwrap().detach();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::Total));
        limits.release(a);
        assert_eq!(limits.open(), 0);
        assert!(limits.acquire(a).is_ok());
    }

    #[test]
    fn bucket_refuses_then_closes() {
        let limits = RateLimitConfig {
            messages_per_second: 10,
            burst: 5,
            max_violations: 3,
        };
        let now = 5_000;
        let mut limiter = RateLimiter::new(&limits, now);
        let verdicts: Vec<Verdict> = (0..10).map(|_| limiter.check(now, &limits)).collect();
        assert_eq!(
            &verdicts[..5],
            &[
                Verdict::Accept,
                Verdict::Accept,
                Verdict::Accept,
                Verdict::Accept,
                Verdict::Accept
            ]
        );
        assert_eq!(
            &verdicts[5..8],
            &[Verdict::Refuse, Verdict::Refuse, Verdict::Refuse]
        );
        assert_eq!(verdicts[8], Verdict::Close);
        // Tokens come back with time.
        assert_eq!(limiter.check(now + 200, &limits), Verdict::Accept);
    }

    #[test]
    fn violations_are_forgiven_after_their_window() {
        let limits = RateLimitConfig {
            messages_per_second: 1,
            burst: 1,
            max_violations: 2,
        };
        let mut limiter = RateLimiter::new(&limits, 0);
        assert_eq!(limiter.check(0, &limits), Verdict::Accept);
        assert_eq!(limiter.check(0, &limits), Verdict::Refuse);
        assert_eq!(limiter.check(0, &limits), Verdict::Refuse);
        // A new window: the count starts again instead of closing.
        let later = VIOLATION_WINDOW_MS + 1;
        assert_eq!(limiter.check(later, &limits), Verdict::Accept);
        assert_eq!(limiter.check(later, &limits), Verdict::Refuse);
        assert_eq!(limiter.check(later, &limits), Verdict::Refuse);
        assert_eq!(limiter.check(later, &limits), Verdict::Close);
    }

    #[test]
    fn no_limit_accepts_everything() {
        let limits = RateLimitConfig {
            messages_per_second: 0,
            burst: 0,
            max_violations: 0,
        };
        let mut limiter = RateLimiter::new(&limits, 0);
        assert!((0..1000).all(|_| limiter.check(0, &limits) == Verdict::Accept));
    }
}
