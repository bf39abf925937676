//! ISO-8601 UTC timestamps with milliseconds, without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time as `2026-01-01T00:00:00.000Z`.
pub(crate) fn now_iso() -> String {
    format_iso_millis(unix_millis())
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_iso_millis(unix_ms: u64) -> String {
    let mut out = [0u8; 24];
    write_iso_millis(unix_ms, &mut out);
    // Only ASCII digits and separators were written.
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out` without allocating or going through
/// `fmt` (this runs once per host call and per protocol reply).
pub(crate) fn write_iso_millis(unix_ms: u64, out: &mut [u8; 24]) {
    let secs = unix_ms / 1000;
    let millis = (unix_ms % 1000) as u32;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let year = year.clamp(0, 9999) as u32;
    fn two(out: &mut [u8], v: u32) {
        out[0] = b'0' + (v / 10) as u8;
        out[1] = b'0' + (v % 10) as u8;
    }
    two(&mut out[0..2], year / 100);
    two(&mut out[2..4], year % 100);
    out[4] = b'-';
    two(&mut out[5..7], month);
    out[7] = b'-';
    two(&mut out[8..10], day);
    out[10] = b'T';
    two(&mut out[11..13], rem / 3600);
    out[13] = b':';
    two(&mut out[14..16], (rem / 60) % 60);
    out[16] = b':';
    two(&mut out[17..19], rem % 60);
    out[19] = b'.';
    out[20] = b'0' + (millis / 100) as u8;
    two(&mut out[21..23], millis % 100);
    out[23] = b'Z';
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_iso_millis(1_767_225_600_000),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_iso_millis(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_iso_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }
}
