//! A real `redis-server` of a test's own, on a free loopback port, without persistence,
//! killed (SIGKILL) when dropped. Used with `#[path]` by the Redis broker's tests only.
#![allow(dead_code)]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to listen.
const START_WAIT: Duration = Duration::from_secs(10);

pub struct Redis {
    pub port: u16,
    /// The TLS port, when started with [`Redis::start_tls`].
    pub tls_port: Option<u16>,
    /// `--requirepass`, used by [`Redis::query`].
    password: Option<String>,
    extra: Vec<String>,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// With extra `redis-server` options (`--requirepass`, `--client-output-buffer-limit` …).
    pub fn start_with(extra: &[&str]) -> Redis {
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .map(|i| extra[i + 1].to_string());
        let mut redis = Redis {
            port: free_port(),
            tls_port: None,
            password,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        redis.spawn();
        redis
    }

    /// Plain on `port` and TLS on `tls_port`, with the server certificate (localhost,
    /// 127.0.0.1) of tests/fixtures, signed by the fixtures' test CA.
    pub fn start_tls() -> Redis {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let tls_port = free_port();
        let mut redis = Redis {
            port: free_port(),
            tls_port: Some(tls_port),
            password: None,
            extra: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                format!("{fixtures}/server_cert.pem"),
                "--tls-key-file".into(),
                format!("{fixtures}/server_key.pem"),
                "--tls-ca-cert-file".into(),
                format!("{fixtures}/ca_cert.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): these tests need it; \
                     install it with `apt-get install -y redis-server` (tests/run-all.sh does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        for port in std::iter::once(self.port).chain(self.tls_port) {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    panic!(
                        "redis-server exited ({status}) with options {:?}",
                        self.extra
                    );
                }
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: no goodbye to any client, nothing saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The plain URL, with the password when there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn query(&self, args: &[&str]) -> redis::Value {
        self.query_as(args)
    }

    pub fn query_as<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).unwrap()
    }

    /// A field of `INFO`.
    pub fn info(&self, field: &str) -> Option<String> {
        let text: String = self.query_as(&["INFO", "all"]);
        let key = format!("{field}:");
        text.lines()
            .find_map(|line| line.strip_prefix(&key).map(|v| v.trim().to_string()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
