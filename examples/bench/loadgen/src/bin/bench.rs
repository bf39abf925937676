//! The benchmark orchestrator and load client.
//!
//! For every round it runs each case against each server in turn (A, B, C, A, B, C, ...),
//! each server a fresh child process driven through the host command protocol
//! (see `herald_bench::host`), and measures from the client side and from /proc.
//! It prints a table of medians with min–max and, with `--markdown`, writes the
//! results (machine, commands, tables, ratios, targets) as Markdown; with `--json`
//! every per-round figure.
//!
//! Run it through `examples/bench/run.sh`; `herald-bench --help` lists the options.

use herald_bench::client::{wait_for, ClientConfig, Pool};
use herald_bench::host::Host;
use herald_bench::nodes::Nodes;
use herald_bench::procstat::{self, PeakRss};
use herald_bench::redis_info;
use herald_bench::stats::{percentile_sorted, summarize, Summary};
use herald_bench::unix_micros;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SESSION: &str = "bench";
/// How long Redis's idle CPU rate is measured before each push through Redis.
const REDIS_IDLE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Opts {
    kit: PathBuf,
    repo: PathBuf,
    servers: Vec<String>,
    cost_hosts: Vec<String>,
    rounds: usize,
    cases: Vec<String>,
    flat1k: (usize, u64),
    flat10k: (usize, u64),
    paced: (usize, u64, f64),
    idle: usize,
    cost: (usize, u64, usize),
    size: usize,
    client_threads: usize,
    setup_threads: usize,
    source_addresses: u8,
    queue: usize,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    logs: PathBuf,
    command_line: String,
    /// Extra or replacement servers: name -> argv.
    custom: Vec<(String, Vec<String>)>,
    /// Multi-node servers: name -> (the server each node runs, number of nodes).
    clusters: Vec<(String, String, usize)>,
    /// `host:port` of the redis-server the Redis hosts use, to read its CPU time.
    redis: Option<String>,
}

const HELP: &str = "herald-bench: Herald benchmark kit (load client + orchestrator)

Options (defaults in brackets):
  --kit DIR             examples/bench directory [examples/bench]
  --repo DIR            repository root [.]
  --servers LIST        servers for throughput/latency/memory
                        [herald-c,herald-node,herald-python,ws-peer,ceiling]
                        (also uws-peer: uWebSockets.js, which run.sh adds when it loads)
  --cost-hosts LIST     hosts for the notify-cost case [herald-c,herald-node,herald-python,herald-go]
  --rounds N            rounds, servers alternating within each round [5]
  --cases LIST          flat1k,flat10k,paced,idle,cost [all]
  --flat1k NxM          [1000x1000]
  --flat10k NxM         [10000x100]
  --paced NxM@RATE      [1000x250@50]
  --idle N              [10000]   (measured on the flat10k connections when N matches)
  --cost NxKxCHUNKS     subscribers x calls per chunk x chunks [100x2000x10]
  --size BYTES          progress payload size [200]
  --client-threads N    load-client reader threads [1]
  --setup-threads N     parallel connection setup [8]
  --source-addresses S  connect from 127.0.0.1 … 127.0.0.S, spreading ephemeral ports [1]
  --queue N             Herald client_queue_size and the ws peer's bound, in messages [4096]
  --json FILE           every per-round figure
  --markdown FILE       results as Markdown (for BENCHMARKS.md)
  --logs DIR            server stderr logs [target/bench-logs]
  --server-cmd NAME=CMD define or replace a server/host (e.g. an A/B build of the core:
                        --server-cmd herald-c-new=/tmp/x/herald-c-host); list NAME in
                        --servers/--cost-hosts. Names starting with herald- count as Herald.
  --cluster NAME=BASE:K server NAME is K processes of server BASE (e.g. K Herald nodes on
                        one Redis: --cluster herald-c-redis-x3=herald-c-redis:3). The load
                        client spreads its connections round-robin over the K ports; the
                        first node publishes; server CPU and RSS are summed over the nodes.
  --redis HOST:PORT     the redis-server the Redis hosts use: its CPU time (INFO cpu) per
                        publication is reported for every server whose name has \"redis\"
  --quick               small sizes for a smoke run (N=200, M=200, 2 rounds)
";

fn parse_nxm(s: &str) -> (usize, u64) {
    let (n, m) = s.split_once('x').expect("NxM");
    (n.parse().expect("N"), m.parse().expect("M"))
}

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    let mut o = Opts {
        kit: PathBuf::from("examples/bench"),
        repo: PathBuf::from("."),
        servers: list("herald-c,herald-node,herald-python,ws-peer,ceiling"),
        cost_hosts: list("herald-c,herald-node,herald-python,herald-go"),
        rounds: 5,
        cases: list("flat1k,flat10k,paced,idle,cost"),
        flat1k: (1000, 1000),
        flat10k: (10000, 100),
        paced: (1000, 250, 50.0),
        idle: 10000,
        cost: (100, 2000, 10),
        size: 200,
        client_threads: 1,
        setup_threads: 8,
        source_addresses: 1,
        queue: 4096,
        json: None,
        markdown: None,
        logs: PathBuf::from("target/bench-logs"),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        custom: Vec::new(),
        clusters: Vec::new(),
        redis: None,
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut val = || {
            i += 1;
            args.get(i).cloned().unwrap_or_else(|| {
                eprintln!("{a} needs a value");
                std::process::exit(2)
            })
        };
        match a {
            "--kit" => o.kit = val().into(),
            "--repo" => o.repo = val().into(),
            "--servers" => o.servers = list(&val()),
            "--cost-hosts" => o.cost_hosts = list(&val()),
            "--rounds" => o.rounds = val().parse().expect("rounds"),
            "--cases" => o.cases = list(&val()),
            "--flat1k" => o.flat1k = parse_nxm(&val()),
            "--flat10k" => o.flat10k = parse_nxm(&val()),
            "--paced" => {
                let v = val();
                let (nm, rate) = v.split_once('@').expect("NxM@RATE");
                let (n, m) = parse_nxm(nm);
                o.paced = (n, m, rate.parse().expect("rate"));
            }
            "--idle" => o.idle = val().parse().expect("idle"),
            "--cost" => {
                let v = val();
                let p: Vec<&str> = v.split('x').collect();
                o.cost = (
                    p[0].parse().expect("N"),
                    p[1].parse().expect("K"),
                    p.get(2).map_or(10, |c| c.parse().expect("chunks")),
                );
            }
            "--size" => o.size = val().parse().expect("size"),
            "--client-threads" => o.client_threads = val().parse().expect("threads"),
            "--setup-threads" => o.setup_threads = val().parse().expect("threads"),
            "--source-addresses" => {
                o.source_addresses = val()
                    .parse()
                    .ok()
                    .filter(|s| (1..=254).contains(s))
                    .unwrap_or_else(|| {
                        eprintln!("--source-addresses needs a number in 1..=254");
                        std::process::exit(2)
                    })
            }
            "--queue" => o.queue = val().parse().expect("queue"),
            "--json" => o.json = Some(val().into()),
            "--markdown" => o.markdown = Some(val().into()),
            "--logs" => o.logs = val().into(),
            "--server-cmd" => {
                let v = val();
                let (name, cmd) = v.split_once('=').expect("NAME=COMMAND");
                o.custom.push((
                    name.to_string(),
                    cmd.split_whitespace().map(String::from).collect(),
                ));
            }
            "--cluster" => {
                let v = val();
                let parsed = v.split_once('=').and_then(|(name, rest)| {
                    let (base, k) = rest.rsplit_once(':')?;
                    let k: usize = k.parse().ok().filter(|k| (1..=16).contains(k))?;
                    Some((name.to_string(), base.to_string(), k))
                });
                match parsed {
                    Some(c) => o.clusters.push(c),
                    None => {
                        eprintln!("--cluster needs NAME=BASE:K with K in 1..=16, got {v:?}");
                        std::process::exit(2)
                    }
                }
            }
            "--redis" => o.redis = Some(val()),
            "--quick" => {
                o.rounds = 2;
                o.flat1k = (200, 200);
                o.flat10k = (1000, 50);
                o.paced = (200, 50, 50.0);
                o.idle = 1000;
                o.cost = (20, 500, 3);
            }
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown option {other}\n\n{HELP}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    o
}

/// How to start each server/host. Every one prints `READY <port>` and obeys the host
/// command protocol.
fn server_argv(o: &Opts, name: &str) -> Vec<String> {
    if let Some((_, base, _)) = o.clusters.iter().find(|(n, _, _)| n == name) {
        return server_argv(o, base);
    }
    if let Some((_, argv)) = o.custom.iter().find(|(n, _)| n == name) {
        return argv.clone();
    }
    let kit = |p: &str| o.kit.join(p).to_string_lossy().to_string();
    let repo = |p: &str| o.repo.join(p).to_string_lossy().to_string();
    match name {
        "herald-c" => vec![kit("hosts/c/build/herald-c-host")],
        "herald-go" => vec![kit("hosts/go/build/herald-go-host")],
        "herald-node" => vec!["node".into(), kit("hosts/node-host.js")],
        "herald-python" => vec!["python3".into(), kit("hosts/python-host.py")],
        "ws-peer" => vec!["node".into(), kit("ws-peer/server.js")],
        "uws-peer" => vec!["node".into(), kit("uws-peer/server.js")],
        "ceiling" => vec![repo("target/release/ceiling")],
        other => {
            eprintln!("unknown server {other}");
            std::process::exit(2)
        }
    }
}

fn host_env(o: &Opts) -> Vec<(String, String)> {
    vec![
        ("BENCH_CLIENT_QUEUE".into(), o.queue.to_string()),
        ("BENCH_SESSION".into(), SESSION.into()),
        // The ws peer's backpressure bound: the same number of messages as Herald's
        // client queue, in bytes (payload + envelope ~ size + 160).
        (
            "BENCH_MAX_BUFFERED".into(),
            (o.queue * (o.size + 160)).to_string(),
        ),
    ]
}

type Metrics = BTreeMap<String, f64>;

#[derive(Debug, Clone)]
struct Record {
    case: String,
    server: String,
    round: usize,
    metrics: Metrics,
}

struct Bench {
    o: Opts,
    records: Vec<Record>,
    notes: Vec<String>,
}

/// How many processes server `name` runs (1 unless it is a `--cluster`).
fn node_count(o: &Opts, name: &str) -> usize {
    o.clusters
        .iter()
        .find(|(n, _, _)| n == name)
        .map_or(1, |(_, _, k)| *k)
}

/// Whether `name` publishes through Redis (its Redis CPU is then measured).
fn uses_redis(name: &str) -> bool {
    name.contains("redis")
}

/// Every node of `server`, each a fresh process, started one after the other.
fn start_nodes(b: &Bench, server: &str, case: &str, round: usize) -> Result<Nodes, String> {
    let k = node_count(&b.o, server);
    let mut hosts = Vec::with_capacity(k);
    for node in 1..=k {
        let label = if k > 1 {
            format!("{case}, node {node}/{k}")
        } else {
            case.to_string()
        };
        hosts.push(start_host(b, server, &label, round)?);
    }
    Ok(Nodes::new(hosts))
}

fn start_host(b: &Bench, server: &str, case: &str, round: usize) -> Result<Host, String> {
    std::fs::create_dir_all(&b.o.logs).ok();
    let log = b.o.logs.join(format!("{server}.log"));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
    {
        use std::io::Write;
        let _ = writeln!(f, "---- {case} round {round} ----");
    }
    // HERALD_BENCH_WRAP="valgrind --tool=dhat" (or "strace -c -f -o FILE", ...) runs
    // every host under a profiler; the resource figures are then the wrapper's.
    let mut argv = server_argv(&b.o, server);
    if let Ok(wrap) = std::env::var("HERALD_BENCH_WRAP") {
        let mut w: Vec<String> = wrap.split_whitespace().map(String::from).collect();
        w.append(&mut argv);
        argv = w;
    }
    Host::spawn(server, &argv, &host_env(&b.o), &log)
}

fn connect(b: &Bench, ports: Vec<u16>, n: usize) -> Result<Pool, String> {
    Pool::connect(&ClientConfig {
        ports,
        path: "/ws".into(),
        connections: n,
        session: SESSION.into(),
        threads: b.o.client_threads,
        setup_threads: b.o.setup_threads,
        setup_timeout: Duration::from_secs(20),
        source_addresses: b.o.source_addresses,
    })
}

/// Pushes M messages (rate 0 = flat out) and measures deliveries, latency and cost.
fn push_phase(
    b: &Bench,
    nodes: &mut Nodes,
    redis: Option<&str>,
    pool: &Pool,
    m: u64,
    rate: f64,
) -> Result<Metrics, String> {
    let n = pool.connections as u64;
    pool.reset(m);
    // Redis's own idle CPU rate (cron, the nodes' connections), to take out of its
    // CPU per publication: at 50 publications/s it is a large share of the total.
    let redis_idle = redis.and_then(|addr| {
        let a = redis_info::cpu_seconds(addr)?;
        let t = Instant::now();
        std::thread::sleep(REDIS_IDLE_WINDOW);
        let b = redis_info::cpu_seconds(addr)?;
        Some((b - a).max(0.0) / t.elapsed().as_secs_f64())
    });
    let s0 = nodes.sample().ok_or("server process gone")?;
    let redis0 = redis.and_then(redis_info::cpu_seconds);
    let peak = PeakRss::start(&nodes.pids(), Duration::from_millis(50));
    let c0 = procstat::self_cpu_ns();
    let t_go = unix_micros();
    nodes
        .publisher()
        .send(&format!("push {m} {rate} {}", b.o.size))?;
    let expected_secs = if rate > 0.0 { m as f64 / rate } else { 0.0 };
    let deadline = Duration::from_secs_f64(120.0 + expected_secs * 2.0);
    let complete = wait_for(
        pool,
        n * m,
        Duration::from_secs(5).max(Duration::from_secs_f64(3.0 / rate.max(1.0))),
        deadline,
    );
    let t_done = unix_micros();
    let s1 = nodes.sample().ok_or("server process gone")?;
    let redis1 = redis.and_then(redis_info::cpu_seconds);
    let c1 = procstat::self_cpu_ns();
    let pushed = nodes.publisher().expect("PUSHED", Duration::from_secs(60));
    let peak_rss = peak.finish();
    let mut col = pool.collect();
    // What the server keeps once the burst is over (buffers retained per connection).
    std::thread::sleep(Duration::from_secs(1));
    let after = nodes.sample();
    let mut m_out = Metrics::new();
    m_out.insert("nodes".into(), nodes.len() as f64);
    if let (Some(r0), Some(r1), Some(idle)) = (redis0, redis1, redis_idle) {
        if m > 0 {
            let used = (r1 - r0).max(0.0);
            let span = t_done.saturating_sub(t_go) as f64 / 1e6;
            m_out.insert(
                "redis_cpu_us_per_publication_gross".into(),
                used * 1e6 / m as f64,
            );
            m_out.insert(
                "redis_cpu_us_per_publication".into(),
                (used - idle * span).max(0.0) * 1e6 / m as f64,
            );
            m_out.insert("redis_idle_cpu_ms_per_s".into(), idle * 1e3);
        }
    }
    let received = col.received as f64;
    let span_s = (col.last_recv_us.saturating_sub(t_go)) as f64 / 1e6;
    m_out.insert("deliveries".into(), received);
    m_out.insert("complete".into(), if complete { 1.0 } else { 0.0 });
    m_out.insert(
        "deliveries_per_s".into(),
        if span_s > 0.0 { received / span_s } else { 0.0 },
    );
    m_out.insert("elapsed_s".into(), span_s);
    m_out.insert("missing".into(), col.missing as f64);
    m_out.insert("out_of_order".into(), col.out_of_order as f64);
    m_out.insert("closed_conns".into(), col.closed as f64);
    let server_cpu = s1.cpu_ns.saturating_sub(s0.cpu_ns) as f64;
    let wall_ns = (t_done.saturating_sub(t_go)) as f64 * 1000.0;
    if received > 0.0 {
        m_out.insert("server_cpu_ns_per_delivery".into(), server_cpu / received);
        m_out.insert(
            "client_cpu_ns_per_delivery".into(),
            (c1 - c0) as f64 / received,
        );
    }
    m_out.insert(
        "server_cpu_cores".into(),
        if wall_ns > 0.0 {
            server_cpu / wall_ns
        } else {
            0.0
        },
    );
    m_out.insert("server_peak_rss_mb".into(), peak_rss as f64 / 1024.0);
    if let Some(a) = after {
        m_out.insert("server_rss_after_mb".into(), a.rss_kb as f64 / 1024.0);
    }
    if let Some(line) = pushed {
        let p: Vec<&str> = line.split_whitespace().collect();
        if let (Some(ns), Some(retries)) = (p.get(2), p.get(3)) {
            m_out.insert(
                "host_push_ms".into(),
                ns.parse::<f64>().unwrap_or(0.0) / 1e6,
            );
            m_out.insert("host_retries".into(), retries.parse().unwrap_or(0.0));
        }
    } else {
        m_out.insert("host_push_ms".into(), f64::NAN);
    }
    col.latencies_us.sort_unstable();
    let l = &col.latencies_us;
    for (name, p) in [
        ("lat_p1_us", 1.0),
        ("lat_p10_us", 10.0),
        ("lat_p50_us", 50.0),
        ("lat_p90_us", 90.0),
        ("lat_p99_us", 99.0),
        ("lat_p999_us", 99.9),
        ("lat_max_us", 100.0),
    ] {
        m_out.insert(name.into(), percentile_sorted(l, p) as f64);
    }
    Ok(m_out)
}

fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

fn log_line(case: &str, server: &str, round: usize, m: &Metrics) {
    let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    match case {
        "idle" => eprintln!(
            "  [r{round}] {case:<8} {server:<14} {:>8.0} B/conn  rss {:>7.1} MB",
            g("bytes_per_conn"),
            g("rss_mb")
        ),
        "cost" => eprintln!(
            "  [r{round}] {case:<8} {server:<14} {:>8.0} ns/call (min {:.0})  errors {}",
            g("ns_per_call"),
            g("ns_per_call_min"),
            g("errors")
        ),
        _ => eprintln!(
            "  [r{round}] {case:<8} {server:<14} {:>10.0} deliv/s  cpu {:>6.0} ns/deliv  p50 {:>7.0} us  p99 {:>7.0} us  missing {} ooo {}{}",
            g("deliveries_per_s"),
            g("server_cpu_ns_per_delivery"),
            g("lat_p50_us"),
            g("lat_p99_us"),
            g("missing"),
            g("out_of_order"),
            m.get("redis_cpu_us_per_publication")
                .map_or(String::new(), |r| format!("  redis {r:.1} us/pub"))
        ),
    }
}

impl Bench {
    fn record(&mut self, case: &str, server: &str, round: usize, metrics: Metrics) {
        log_line(case, server, round, &metrics);
        self.records.push(Record {
            case: case.into(),
            server: server.into(),
            round,
            metrics,
        });
    }

    /// The redis-server whose CPU `server`'s push phases are charged with.
    fn redis_for(&self, server: &str) -> Option<String> {
        self.o.redis.clone().filter(|_| uses_redis(server))
    }

    fn fail(&mut self, case: &str, server: &str, round: usize, e: String) {
        eprintln!("  [r{round}] {case} {server}: FAILED: {e}");
        self.notes
            .push(format!("round {round}, {case}, {server}: failed: {e}"));
    }

    /// flat1k and paced share a server process and its connections when N matches.
    fn group_1k(&mut self, server: &str, round: usize, flat: bool, paced: bool) {
        let (n, m) = self.o.flat1k;
        let (pn, pm, rate) = self.o.paced;
        let mut plan: Vec<(&str, usize, u64, f64)> = Vec::new();
        if flat {
            plan.push(("flat1k", n, m, 0.0));
        }
        if paced {
            plan.push(("paced", pn, pm, rate));
        }
        // Group consecutive phases with the same N onto one process.
        let mut i = 0;
        while i < plan.len() {
            let n = plan[i].1;
            let mut j = i;
            while j < plan.len() && plan[j].1 == n {
                j += 1;
            }
            let phases: Vec<_> = plan[i..j].to_vec();
            let label = phases.iter().map(|p| p.0).collect::<Vec<_>>().join("+");
            let mut nodes = match start_nodes(self, server, &label, round) {
                Ok(h) => h,
                Err(e) => {
                    self.fail(&label, server, round, e);
                    i = j;
                    continue;
                }
            };
            let redis = self.redis_for(server);
            match connect(self, nodes.ports(), n) {
                Ok(pool) => {
                    settle();
                    for (case, _, m, rate) in phases {
                        match push_phase(self, &mut nodes, redis.as_deref(), &pool, m, rate) {
                            Ok(metrics) => self.record(case, server, round, metrics),
                            Err(e) => self.fail(case, server, round, e),
                        }
                        settle();
                    }
                    pool.close();
                }
                Err(e) => self.fail(&label, server, round, e),
            }
            nodes.quit(Duration::from_secs(5));
            i = j;
        }
    }

    /// Idle memory at N connections, then the flat-out push on the same connections.
    fn group_10k(&mut self, server: &str, round: usize, idle: bool, flat: bool) {
        let (n, m) = self.o.flat10k;
        let idle_n = self.o.idle;
        if idle && idle_n != n {
            self.group_10k_one(server, round, idle_n, true, None);
            if flat {
                self.group_10k_one(server, round, n, false, Some(m));
            }
        } else {
            self.group_10k_one(server, round, n, idle, flat.then_some(m));
        }
    }

    fn group_10k_one(
        &mut self,
        server: &str,
        round: usize,
        n: usize,
        idle: bool,
        push: Option<u64>,
    ) {
        let label = match (idle, push.is_some()) {
            (true, true) => "idle+flat10k",
            (true, false) => "idle",
            _ => "flat10k",
        };
        let mut nodes = match start_nodes(self, server, label, round) {
            Ok(h) => h,
            Err(e) => return self.fail(label, server, round, e),
        };
        std::thread::sleep(Duration::from_secs(1));
        let before = nodes.sample();
        let t0 = Instant::now();
        let pool = match connect(self, nodes.ports(), n) {
            Ok(p) => p,
            Err(e) => {
                nodes.quit(Duration::from_secs(5));
                return self.fail(label, server, round, e);
            }
        };
        let setup_s = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(2));
        if idle {
            let after = nodes.sample();
            match (before, after) {
                (Some(a), Some(b2)) => {
                    let mut m = Metrics::new();
                    m.insert("connections".into(), n as f64);
                    m.insert("rss_before_mb".into(), a.rss_kb as f64 / 1024.0);
                    m.insert("rss_mb".into(), b2.rss_kb as f64 / 1024.0);
                    m.insert(
                        "bytes_per_conn".into(),
                        (b2.rss_kb as f64 - a.rss_kb as f64) * 1024.0 / n as f64,
                    );
                    m.insert("setup_s".into(), setup_s);
                    m.insert("connects_per_s".into(), n as f64 / setup_s.max(1e-9));
                    m.insert("threads".into(), b2.threads as f64);
                    self.record("idle", server, round, m);
                }
                _ => self.fail("idle", server, round, "server process gone".into()),
            }
        }
        if let Some(m) = push {
            let redis = self.redis_for(server);
            match push_phase(self, &mut nodes, redis.as_deref(), &pool, m, 0.0) {
                Ok(metrics) => self.record("flat10k", server, round, metrics),
                Err(e) => self.fail("flat10k", server, round, e),
            }
        }
        pool.close();
        nodes.quit(Duration::from_secs(5));
    }

    /// ns per notify call, with the server running and `n` subscribers draining.
    fn group_cost(&mut self, server: &str, round: usize) {
        let (n, k, chunks) = self.o.cost;
        let mut nodes = match start_nodes(self, server, "cost", round) {
            Ok(h) => h,
            Err(e) => return self.fail("cost", server, round, e),
        };
        let pool = match connect(self, nodes.ports(), n) {
            Ok(p) => p,
            Err(e) => {
                nodes.quit(Duration::from_secs(5));
                return self.fail("cost", server, round, e);
            }
        };
        let host = nodes.publisher();
        settle();
        let mut per_call = Vec::new();
        let mut cpu_per_call = Vec::new();
        let mut errors = 0.0;
        let mut missing = 0.0;
        // One warm-up chunk, not counted.
        for c in 0..=chunks {
            pool.reset(k);
            if let Err(e) = host.send(&format!("cost {k} {}", self.o.size)) {
                self.notes.push(format!("cost {server}: {e}"));
                break;
            }
            let Some(line) = host.expect("COST", Duration::from_secs(60)) else {
                self.notes
                    .push(format!("round {round}, cost, {server}: no COST reply"));
                break;
            };
            let p: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(f64::NAN))
                .collect();
            wait_for(
                &pool,
                n as u64 * k,
                Duration::from_secs(5),
                Duration::from_secs(60),
            );
            let col = pool.collect();
            if c == 0 {
                continue;
            }
            if p.len() >= 3 && p[0] > 0.0 {
                per_call.push(p[1] / p[0]);
                errors += p[2];
                // Hosts that can read their thread's CPU clock report it too.
                if let Some(cpu) = p.get(3) {
                    cpu_per_call.push(cpu / p[0]);
                }
            }
            missing += col.missing as f64;
        }
        pool.close();
        nodes.quit(Duration::from_secs(5));
        if let Some(s) = summarize(&per_call) {
            let mut m = Metrics::new();
            m.insert("ns_per_call".into(), s.median);
            m.insert("ns_per_call_min".into(), s.min);
            m.insert("ns_per_call_max".into(), s.max);
            if let Some(c) = summarize(&cpu_per_call) {
                m.insert("cpu_ns_per_call".into(), c.median);
            }
            m.insert("errors".into(), errors);
            m.insert("missing".into(), missing);
            m.insert("subscribers".into(), n as f64);
            self.record("cost", server, round, m);
        }
    }

    fn values(&self, case: &str, server: &str, metric: &str) -> Vec<f64> {
        self.records
            .iter()
            .filter(|r| r.case == case && r.server == server)
            .filter_map(|r| r.metrics.get(metric).copied())
            .collect()
    }

    fn summary(&self, case: &str, server: &str, metric: &str) -> Option<Summary> {
        summarize(&self.values(case, server, metric))
    }

    /// Per-round ratios a/b for the rounds in which both ran.
    fn round_ratios(&self, case: &str, metric: &str, a: &str, b: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for r in 1..=self.o.rounds {
            let get = |s: &str| {
                self.records
                    .iter()
                    .find(|x| x.case == case && x.server == s && x.round == r)
                    .and_then(|x| x.metrics.get(metric).copied())
            };
            if let (Some(x), Some(y)) = (get(a), get(b)) {
                if y != 0.0 {
                    out.push(x / y);
                }
            }
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_summary(s: Option<Summary>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.min == s.max => fmt_num(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
    }
}

fn fmt_ratio(median_ratio: Option<f64>, per_round: &[f64]) -> String {
    match (median_ratio, summarize(per_round)) {
        (Some(r), Some(s)) => format!("{r:.2}× (rounds {:.2}–{:.2})", s.min, s.max),
        (Some(r), None) => format!("{r:.2}×"),
        _ => "n/a".into(),
    }
}

/// The flat-out cases (N=1000 and N=10000) report the same metrics.
const FLAT_METRICS: &[(&str, &str)] = &[
    ("deliveries_per_s", "deliveries/s"),
    ("server_cpu_ns_per_delivery", "server CPU ns/delivery"),
    ("server_cpu_cores", "server CPU (cores busy)"),
    ("lat_p50_us", "latency p50 µs"),
    ("lat_p99_us", "latency p99 µs"),
    // With M=1 (`--flat10k 19000x1`): how long one broadcast takes to reach everyone.
    ("lat_max_us", "latency max µs"),
    ("server_peak_rss_mb", "server peak RSS MB"),
    ("server_rss_after_mb", "server RSS MB 1 s after the burst"),
    ("missing", "missing"),
    ("out_of_order", "out of order"),
    ("client_cpu_ns_per_delivery", "load client CPU ns/delivery"),
    (
        "redis_cpu_us_per_publication",
        "Redis CPU µs/publication, net of idle",
    ),
    (
        "redis_cpu_us_per_publication_gross",
        "Redis CPU µs/publication, gross",
    ),
];

const CASE_METRICS: &[(&str, &[(&str, &str)])] = &[
    ("flat1k", FLAT_METRICS),
    ("flat10k", FLAT_METRICS),
    (
        "paced",
        &[
            ("lat_p50_us", "latency p50 µs"),
            ("lat_p90_us", "latency p90 µs"),
            ("lat_p99_us", "latency p99 µs"),
            ("lat_p999_us", "latency p99.9 µs"),
            ("lat_max_us", "latency max µs"),
            ("server_cpu_ns_per_delivery", "server CPU ns/delivery"),
            (
                "redis_cpu_us_per_publication",
                "Redis CPU µs/publication, net of idle",
            ),
            (
                "redis_cpu_us_per_publication_gross",
                "Redis CPU µs/publication, gross",
            ),
            ("missing", "missing"),
            ("out_of_order", "out of order"),
        ],
    ),
    (
        "idle",
        &[
            ("bytes_per_conn", "RSS bytes per connection"),
            ("rss_mb", "RSS MB with N connected"),
            ("rss_before_mb", "RSS MB before connecting"),
            ("setup_s", "connect+subscribe N, s"),
            ("connects_per_s", "connect+subscribe per s"),
        ],
    ),
    (
        "cost",
        &[
            ("ns_per_call", "ns per notify call (median of chunks)"),
            ("ns_per_call_min", "fastest chunk, ns per call"),
            (
                "cpu_ns_per_call",
                "calling thread CPU ns per call (C, Python)",
            ),
            ("errors", "errors"),
            ("missing", "missing deliveries"),
        ],
    ),
];

fn case_title(o: &Opts, case: &str) -> String {
    match case {
        "flat1k" => format!(
            "Flat out: N={} × M={} ({}-byte payload)",
            o.flat1k.0, o.flat1k.1, o.size
        ),
        "flat10k" => format!(
            "Flat out: N={} × M={} ({}-byte payload)",
            o.flat10k.0, o.flat10k.1, o.size
        ),
        "paced" => format!(
            "Paced: N={} at {} messages/s, M={}",
            o.paced.0, o.paced.2, o.paced.1
        ),
        "idle" => format!("Idle memory: N={} connections, each subscribed", o.idle),
        "cost" => format!(
            "Notify cost: {} chunks of {} calls, {} subscribers attached",
            o.cost.2, o.cost.1, o.cost.0
        ),
        _ => case.into(),
    }
}

fn report(b: &Bench, machine: &str) -> String {
    let o = &b.o;
    let mut s = String::new();
    let _ = writeln!(s, "{machine}");
    s.push_str(&redis_setup(o));
    for (case, metrics) in CASE_METRICS {
        if !o.cases.iter().any(|c| c == case) {
            continue;
        }
        let servers: Vec<&String> = if *case == "cost" {
            o.cost_hosts.iter().collect()
        } else {
            o.servers.iter().collect()
        };
        let servers: Vec<&String> = servers
            .into_iter()
            .filter(|sv| {
                b.records
                    .iter()
                    .any(|r| r.case == *case && &r.server == *sv)
            })
            .collect();
        if servers.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n#### {}\n", case_title(o, case));
        let _ = write!(s, "| metric |");
        for sv in &servers {
            let _ = write!(s, " {sv} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &servers {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        for (metric, label) in metrics.iter() {
            let _ = write!(s, "| {label} |");
            for sv in &servers {
                let _ = write!(s, " {} |", fmt_summary(b.summary(case, sv, metric)));
            }
            let _ = writeln!(s);
        }
        let _ = write!(s, "| rounds |");
        for sv in &servers {
            let _ = write!(s, " {} |", b.values(case, sv, metrics[0].0).len());
        }
        let _ = writeln!(s);
    }
    s.push_str(&ratios_and_targets(b));
    if !b.notes.is_empty() {
        let _ = writeln!(s, "\nNotes from the run:\n");
        for n in &b.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn ratio_of_medians(b: &Bench, case: &str, metric: &str, x: &str, y: &str) -> Option<f64> {
    let a = b.summary(case, x, metric)?.median;
    let c = b.summary(case, y, metric)?.median;
    (c != 0.0).then_some(a / c)
}

fn ratios_and_targets(b: &Bench) -> String {
    let o = &b.o;
    let mut s = String::new();
    let heralds: Vec<&String> = o
        .servers
        .iter()
        .filter(|x| x.starts_with("herald-"))
        .collect();
    let has = |name: &str| o.servers.iter().any(|x| x == name);
    let mut rows: Vec<(String, String, String, Option<bool>)> = Vec::new(); // target, who, value, met
    let _ = writeln!(
        s,
        "\n#### Ratios (same run; ratio of medians, per-round ratios in brackets)\n"
    );
    let _ = writeln!(
        s,
        "| case | metric | server | vs ws-peer | vs ceiling |\n|---|---|---|---|---|"
    );
    for case in ["flat1k", "flat10k"] {
        if !o.cases.iter().any(|c| c == case) {
            continue;
        }
        for h in &heralds {
            for (metric, label) in [
                ("deliveries_per_s", "deliveries/s"),
                ("server_cpu_ns_per_delivery", "CPU/delivery"),
            ] {
                let ws = if has("ws-peer") {
                    fmt_ratio(
                        ratio_of_medians(b, case, metric, h, "ws-peer"),
                        &b.round_ratios(case, metric, h, "ws-peer"),
                    )
                } else {
                    "n/a".into()
                };
                let ce = if has("ceiling") {
                    fmt_ratio(
                        ratio_of_medians(b, case, metric, h, "ceiling"),
                        &b.round_ratios(case, metric, h, "ceiling"),
                    )
                } else {
                    "n/a".into()
                };
                let _ = writeln!(s, "| {case} | {label} | {h} | {ws} | {ce} |");
            }
            if has("ws-peer") {
                let r = ratio_of_medians(b, case, "deliveries_per_s", h, "ws-peer");
                rows.push((
                    format!("{case}: deliveries/s ≥ 15× ws-peer"),
                    h.to_string(),
                    r.map_or("n/a".into(), |r| format!("{r:.2}×")),
                    r.map(|r| r >= 15.0),
                ));
            }
            if has("ceiling") {
                let r = ratio_of_medians(b, case, "server_cpu_ns_per_delivery", h, "ceiling");
                rows.push((
                    format!("{case}: server CPU/delivery ≤ 3× ceiling"),
                    h.to_string(),
                    r.map_or("n/a".into(), |r| format!("{r:.2}×")),
                    r.map(|r| r <= 3.0),
                ));
            }
        }
    }
    if o.cases.iter().any(|c| c == "paced") {
        for h in &heralds {
            let r = ratio_of_medians(b, "paced", "lat_p99_us", h, "ceiling");
            let per = b.round_ratios("paced", "lat_p99_us", h, "ceiling");
            let _ = writeln!(
                s,
                "| paced | p99 latency | {h} | {} | {} |",
                fmt_ratio(
                    ratio_of_medians(b, "paced", "lat_p99_us", h, "ws-peer"),
                    &b.round_ratios("paced", "lat_p99_us", h, "ws-peer")
                ),
                fmt_ratio(r, &per)
            );
            if has("ceiling") {
                rows.push((
                    "paced: p99 latency ≤ ceiling × 1.2".into(),
                    h.to_string(),
                    r.map_or("n/a".into(), |r| format!("{r:.2}× ceiling")),
                    r.map(|r| r <= 1.2),
                ));
            }
        }
    }
    if o.cases.iter().any(|c| c == "idle") {
        for h in &heralds {
            let v = b.summary("idle", h, "bytes_per_conn").map(|x| x.median);
            let _ = writeln!(
                s,
                "| idle | bytes/conn | {h} | {} | {} |",
                fmt_ratio(
                    ratio_of_medians(b, "idle", "bytes_per_conn", h, "ws-peer"),
                    &b.round_ratios("idle", "bytes_per_conn", h, "ws-peer")
                ),
                fmt_ratio(
                    ratio_of_medians(b, "idle", "bytes_per_conn", h, "ceiling"),
                    &b.round_ratios("idle", "bytes_per_conn", h, "ceiling")
                )
            );
            rows.push((
                format!("idle RSS ≤ 2.5 KB (2560 B) per connection at N={}", o.idle),
                h.to_string(),
                v.map_or("n/a".into(), |v| format!("{v:.0} B")),
                v.map(|v| v <= 2560.0),
            ));
        }
    }
    // Issue 18's goals: uWebSockets.js as the reference, where it ran.
    if has("uws-peer") {
        for h in &heralds {
            let mut vs_uws = |case: &str, metric: &str, label: &str, at_most: bool| {
                if !o.cases.iter().any(|c| c == case) {
                    return;
                }
                let r = ratio_of_medians(b, case, metric, h, "uws-peer");
                rows.push((
                    format!(
                        "{case}: {label} {} uws-peer",
                        if at_most { "≤" } else { "≥" }
                    ),
                    h.to_string(),
                    r.map_or("n/a".into(), |r| format!("{r:.2}×")),
                    r.map(|r| if at_most { r <= 1.0 } else { r >= 1.0 }),
                ));
            };
            vs_uws(
                "paced",
                "server_cpu_ns_per_delivery",
                "server CPU/delivery",
                true,
            );
            vs_uws("paced", "lat_p50_us", "p50 latency", true);
            vs_uws("paced", "lat_p99_us", "p99 latency", true);
            vs_uws("flat10k", "deliveries_per_s", "deliveries/s", false);
            vs_uws("idle", "bytes_per_conn", "idle RSS per connection", true);
            if o.cases.iter().any(|c| c == "idle") {
                let v = b.summary("idle", h, "bytes_per_conn").map(|x| x.median);
                rows.push((
                    format!("idle RSS ≤ 1.3 KB (1331 B) per connection at N={}", o.idle),
                    h.to_string(),
                    v.map_or("n/a".into(), |v| format!("{v:.0} B")),
                    v.map(|v| v <= 1331.0),
                ));
            }
        }
    }
    if o.cases.iter().any(|c| c == "cost") {
        for h in &o.cost_hosts {
            let limit = if h.starts_with("herald-c") {
                1000.0
            } else if h.starts_with("herald-node") {
                3000.0
            } else if h.starts_with("herald-python") {
                10000.0
            } else {
                f64::NAN
            };
            let h = h.as_str();
            let v = b.summary("cost", h, "ns_per_call").map(|x| x.median);
            let target = if limit.is_nan() {
                format!("notify call from {h} (no target)")
            } else {
                format!("notify call < {} µs", limit / 1000.0)
            };
            rows.push((
                target,
                h.to_string(),
                v.map_or("n/a".into(), |v| format!("{v:.0} ns")),
                if limit.is_nan() {
                    None
                } else {
                    v.map(|v| v < limit)
                },
            ));
        }
    }
    if !has("ws-peer") && !has("ceiling") {
        s.clear(); // a table of ratios to servers that did not run
    }
    // The targets above were set for one node in memory; the Redis servers have their own.
    rows.retain(|(_, who, _, _)| !uses_redis(who));
    s.push_str(&through_redis(b, &mut rows));
    let _ = writeln!(
        s,
        "\n#### Targets\n\n| target | server | measured | verdict |\n|---|---|---|---|"
    );
    for (t, who, v, met) in rows {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "–",
        };
        let _ = writeln!(s, "| {t} | {who} | {v} | {verdict} |");
    }
    s
}

/// The same server in memory that the Redis servers are compared with.
const SINGLE_NODE: &str = "herald-c";
/// Goals for the Redis broker (issue 13): paced p50 at most this much above one node in
/// memory, and CPU per delivery within this factor of it.
const REDIS_P50_BUDGET_US: f64 = 1000.0;
const REDIS_CPU_FACTOR: f64 = 1.5;

/// Differences of medians a − b, with the per-round differences.
fn difference(b: &Bench, case: &str, metric: &str, x: &str, y: &str) -> (Option<f64>, Vec<f64>) {
    let med = |sv: &str| b.summary(case, sv, metric).map(|s| s.median);
    let d = med(x).zip(med(y)).map(|(a, c)| a - c);
    let mut per = Vec::new();
    for r in 1..=b.o.rounds {
        let get = |sv: &str| {
            b.records
                .iter()
                .find(|rec| rec.case == case && rec.server == sv && rec.round == r)
                .and_then(|rec| rec.metrics.get(metric).copied())
        };
        if let (Some(a), Some(c)) = (get(x), get(y)) {
            per.push(a - c);
        }
    }
    (d, per)
}

/// The Redis servers against one node in memory: a table, and their goals as target rows.
fn through_redis(b: &Bench, rows: &mut Vec<(String, String, String, Option<bool>)>) -> String {
    let o = &b.o;
    let mut s = String::new();
    let redis_servers: Vec<&String> = o.servers.iter().filter(|x| uses_redis(x)).collect();
    let want = |c: &str| o.cases.iter().any(|x| x == c);
    if !redis_servers.is_empty() && o.servers.iter().any(|x| x == SINGLE_NODE) {
        let _ = writeln!(
            s,
            "\n#### Through Redis, against {SINGLE_NODE} (one node, in memory; same run, medians, per-round figures in brackets)\n"
        );
        let _ = writeln!(
            s,
            "| case | metric | server | vs {SINGLE_NODE} |\n|---|---|---|---|"
        );
        for sv in &redis_servers {
            for case in ["flat1k", "flat10k", "paced"] {
                if !want(case) {
                    continue;
                }
                let ratio = |metric: &str| {
                    fmt_ratio(
                        ratio_of_medians(b, case, metric, sv, SINGLE_NODE),
                        &b.round_ratios(case, metric, sv, SINGLE_NODE),
                    )
                };
                if case == "paced" {
                    for (metric, label) in
                        [("lat_p50_us", "latency p50"), ("lat_p99_us", "latency p99")]
                    {
                        let (d, per) = difference(b, case, metric, sv, SINGLE_NODE);
                        let _ =
                            writeln!(s, "| {case} | {label} | {sv} | {} |", fmt_delta_us(d, &per));
                    }
                } else {
                    let _ = writeln!(
                        s,
                        "| {case} | deliveries/s | {sv} | {} |",
                        ratio("deliveries_per_s")
                    );
                }
                let _ = writeln!(
                    s,
                    "| {case} | server CPU/delivery | {sv} | {} |",
                    ratio("server_cpu_ns_per_delivery")
                );
            }
        }
        for sv in &redis_servers {
            if want("paced") {
                let (d, _) = difference(b, "paced", "lat_p50_us", sv, SINGLE_NODE);
                rows.push((
                    format!("paced: p50 latency ≤ {SINGLE_NODE} + 1 ms"),
                    sv.to_string(),
                    fmt_delta_us(d, &[]),
                    d.map(|d| d <= REDIS_P50_BUDGET_US),
                ));
            }
            for case in ["flat1k", "paced"] {
                if !want(case) {
                    continue;
                }
                let r = ratio_of_medians(b, case, "server_cpu_ns_per_delivery", sv, SINGLE_NODE);
                rows.push((
                    format!("{case}: server CPU/delivery ≤ {REDIS_CPU_FACTOR}× {SINGLE_NODE}"),
                    sv.to_string(),
                    r.map_or("n/a".into(), |r| format!("{r:.2}×")),
                    r.map(|r| r <= REDIS_CPU_FACTOR),
                ));
            }
        }
    }
    if want("cost") {
        for h in o.cost_hosts.iter().filter(|x| uses_redis(x)) {
            let v = b.summary("cost", h, "ns_per_call").map(|x| x.median);
            rows.push((
                "notify call through Redis (one round trip; no target)".into(),
                h.to_string(),
                v.map_or("n/a".into(), |v| format!("{:.0} µs", v / 1000.0)),
                None,
            ));
        }
    }
    s
}

/// How the Redis and multi-node servers ran, for the header.
fn redis_setup(o: &Opts) -> String {
    let mut s = String::new();
    let all = o.servers.iter().chain(o.cost_hosts.iter());
    if all.clone().any(|x| uses_redis(x)) {
        let _ = writeln!(
            s,
            "- Redis servers ({}): the same host with `\"broker\":{{\"redis\":{{\"url\":…,\"prefix\":\"bench:\"}}}}` added, \
             on one local redis-server {} (no persistence); every host call waits for Redis to confirm. \
             Redis CPU µs/publication: `INFO cpu` (used_cpu_sys + used_cpu_user) from the push command to the last \
             receipt ÷ publications (gross), and the same less Redis's idle rate measured over 1 s just before (net){}.",
            o.servers
                .iter()
                .filter(|x| uses_redis(x))
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", "),
            sh("redis-server --version | sed -n 's/.*v=\\([^ ]*\\).*/\\1/p'"),
            if o.redis.is_some() { "" } else { " (not measured: no --redis)" }
        );
    }
    for (name, base, k) in &o.clusters {
        if !all.clone().any(|x| x == name) {
            continue;
        }
        let _ = writeln!(
            s,
            "- `{name}`: {k} processes of `{base}`; the load client spreads its connections round-robin \
             over their {k} ports; every publication is made through node 1 (so {}/{k} of the subscribers \
             are on other nodes); server CPU, RSS and ns/delivery are summed over the {k} nodes.",
            k - 1
        );
    }
    s
}

fn fmt_delta_us(d: Option<f64>, per_round: &[f64]) -> String {
    let Some(d) = d else {
        return "n/a".into();
    };
    let mut out = format!("{d:+.0} µs");
    if let Some(r) = summarize(per_round) {
        let _ = write!(out, " (rounds {:+.0} to {:+.0})", r.min, r.max);
    }
    out
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine_description(
    o: &Opts,
    started: &str,
    finished: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1");
    format!(
        "- Machine: {} CPUs ({}), {}, kernel {}; Rust {}; Node {}; Python {}.\n\
         - Core: {}.\n\
         - Run: {} → {} (UTC); load average before {}, after {}.\n\
         - Command: `{}`\n\
         - Herald config in every host: `{{\"port\":0,\"client_queue_size\":{}}}` (all other keys default; \
         history on, 256 per channel), so a subscriber can hold {} undelivered messages before eviction and nothing is \
         evicted at M ≤ {}. The ws peer evicts a client whose bufferedAmount exceeds {} bytes.",
        sh("nproc"),
        cpu,
        sh("free -g | awk '/^Mem:/{print $2\" GiB RAM\"}'"),
        sh("uname -r"),
        sh("rustc --version | cut -d' ' -f2"),
        sh("node --version"),
        sh("python3 --version | cut -d' ' -f2"),
        core_revision(o),
        started,
        finished,
        load_before,
        load_after,
        o.command_line,
        o.queue,
        o.queue,
        o.queue,
        o.queue * (o.size + 160),
    )
}

/// The core's revision: $HERALD_BENCH_CORE if set (e.g. for a snapshot without .git),
/// else git's HEAD and whether src/ has uncommitted changes.
fn core_revision(o: &Opts) -> String {
    if let Ok(c) = std::env::var("HERALD_BENCH_CORE") {
        return c;
    }
    let repo = o.repo.display();
    let rev = sh(&format!(
        "git -C '{repo}' rev-parse --short HEAD 2>/dev/null"
    ));
    if rev.is_empty() {
        return "unknown revision (not a git checkout)".into();
    }
    let dirty = sh(&format!(
        "git -C '{repo}' status --porcelain src include build.rs | wc -l"
    ));
    format!("git {rev}, {dirty} uncommitted changes under src/, include/, build.rs")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn write_json(path: &Path, b: &Bench) {
    let recs: Vec<serde_json::Value> = b
        .records
        .iter()
        .map(|r| serde_json::json!({"case": r.case, "server": r.server, "round": r.round, "metrics": r.metrics}))
        .collect();
    let doc = serde_json::json!({"command": b.o.command_line, "records": recs, "notes": b.notes});
    if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn main() {
    let o = parse_opts();
    let started = sh("date -u '+%Y-%m-%d %H:%M:%S'");
    let load_before = loadavg();
    let t0 = Instant::now();
    let mut b = Bench {
        o: o.clone(),
        records: Vec::new(),
        notes: Vec::new(),
    };
    let want = |c: &str| o.cases.iter().any(|x| x == c);
    for round in 1..=o.rounds {
        eprintln!(
            "== round {round}/{} ({:.0} s elapsed)",
            o.rounds,
            t0.elapsed().as_secs_f64()
        );
        if want("flat1k") || want("paced") {
            for server in &o.servers {
                b.group_1k(server, round, want("flat1k"), want("paced"));
            }
        }
        if want("flat10k") || want("idle") {
            for server in &o.servers {
                b.group_10k(server, round, want("idle"), want("flat10k"));
            }
        }
        if want("cost") {
            for server in &o.cost_hosts {
                b.group_cost(server, round);
            }
        }
        if let Some(p) = &o.json {
            write_json(p, &b);
        }
    }
    let finished = sh("date -u '+%Y-%m-%d %H:%M:%S'");
    let machine = machine_description(&o, &started, &finished, &load_before, &loadavg());
    let text = report(&b, &machine);
    println!("{text}");
    eprintln!("total {:.0} s", t0.elapsed().as_secs_f64());
    if let Some(p) = &o.json {
        write_json(p, &b);
    }
    if let Some(p) = &o.markdown {
        if let Err(e) = std::fs::write(p, &text) {
            eprintln!("cannot write {}: {e}", p.display());
        }
    }
}
