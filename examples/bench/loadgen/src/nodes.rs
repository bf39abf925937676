//! One server under test made of one or more host processes: a single node, or several
//! nodes sharing one Redis. The first node is the publisher (it receives the `push` and
//! `cost` commands); resource figures are summed over every node.

use crate::host::Host;
use crate::procstat::{self, Sample};
use std::time::Duration;

pub struct Nodes {
    hosts: Vec<Host>,
}

impl Nodes {
    pub fn new(hosts: Vec<Host>) -> Nodes {
        assert!(!hosts.is_empty(), "a server has at least one node");
        Nodes { hosts }
    }

    /// The node that publishes.
    pub fn publisher(&mut self) -> &mut Host {
        &mut self.hosts[0]
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.hosts.iter().map(|h| h.port).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.hosts.iter().map(Host::pid).collect()
    }

    /// CPU time, RSS and threads summed over the nodes; `None` when any node is gone.
    pub fn sample(&self) -> Option<Sample> {
        let mut total = Sample::default();
        for pid in self.pids() {
            let s = procstat::sample(pid)?;
            total.cpu_ns += s.cpu_ns;
            total.rss_kb += s.rss_kb;
            total.hwm_kb += s.hwm_kb;
            total.threads += s.threads;
        }
        Some(total)
    }

    pub fn quit(self, grace: Duration) {
        // Ask every node first, so they stop in parallel.
        let mut hosts = self.hosts;
        for h in hosts.iter_mut() {
            let _ = h.send("quit");
        }
        for h in hosts {
            h.quit(grace);
        }
    }
}
