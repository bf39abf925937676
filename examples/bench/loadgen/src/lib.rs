//! Shared pieces of the Herald benchmark kit: WebSocket framing, /proc sampling,
//! multi-node servers, Redis's CPU, timestamps and the benchmark message payload.

pub mod client;
pub mod host;
pub mod nodes;
pub mod procstat;
pub mod redis_info;
pub mod stats;
pub mod ws;

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (CLOCK_REALTIME): the unit of the `t` field that
/// every host writes into each message and the load client subtracts on receipt.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The benchmark progress payload: `{"t":<unix µs>,"i":<index>,"pad":"xx..."}` padded to
/// exactly `size` bytes (when `size` is large enough). All hosts build the same text.
pub fn progress_payload(t_us: u64, i: u64, size: usize, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{{\"t\":{t_us},\"i\":{i},\"pad\":\"");
    let tail = 2; // closing quote and brace
    while out.len() + tail < size {
        out.push('x');
    }
    out.push_str("\"}");
}

/// `2026-01-01T00:00:00.000Z` for Unix milliseconds.
pub fn iso_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_exact_size() {
        let mut s = String::new();
        progress_payload(1_790_000_000_000_000, 12, 200, &mut s);
        assert_eq!(s.len(), 200);
        assert!(s.starts_with("{\"t\":1790000000000000,\"i\":12,\"pad\":\"x"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["i"], 12);
    }

    #[test]
    fn iso_format() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_798_761_600_123), "2027-01-01T00:00:00.123Z");
    }
}
