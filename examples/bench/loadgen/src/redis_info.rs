//! Redis's own CPU time, from `INFO cpu` (`used_cpu_sys` + `used_cpu_user`, the whole
//! redis-server process, microsecond resolution), read over a plain RESP connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// CPU seconds redis-server at `addr` (`host:port`) has used, or `None` when it cannot
/// be asked.
pub fn cpu_seconds(addr: &str) -> Option<f64> {
    let addr: SocketAddr = addr.parse().ok()?;
    let timeout = Duration::from_secs(2);
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    (&stream).write_all(b"INFO cpu\r\n").ok()?;
    let mut reader = BufReader::new(&stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    // A bulk string: `$<len>\r\n<body>\r\n`.
    let len: usize = header.trim_end().strip_prefix('$')?.parse().ok()?;
    if len > 64 * 1024 {
        return None;
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    parse_cpu(&String::from_utf8_lossy(&body))
}

fn parse_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_sys_and_user() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_sys_main_thread:1.400000\r\n";
        assert_eq!(parse_cpu(info), Some(1.75));
        assert_eq!(parse_cpu("# CPU\r\n"), None);
    }
}
