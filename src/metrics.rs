//! `GET /metrics`: the stats keys and the publish-to-write latency in the Prometheus
//! text format (version 0.0.4), encoded by prometheus-client.
//!
//! Latency is measured from the host's call to the socket write that completed the
//! publication. Each host message is stamped once, in the 4 bytes of padding its frame
//! already had; a connection observes once per completed write, for the oldest
//! stamped frame in it (the batch's worst case), so the cost is one clock read and a
//! few relaxed atomic adds per write, not per message.

use crate::shared::Shared;
use crate::stats::{Gauges, Kind, MetricInfo};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

pub(crate) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Metric names start with this.
const PREFIX: &str = "herald";
/// Upper bounds of the latency buckets, in microseconds (100 µs to 10 s).
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// When a host message was made: microseconds on a process-wide monotonic clock,
/// wrapping every 71 minutes (latencies are far shorter; a longer one reads as short).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(NonZeroU32);

fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_us() -> u32 {
    // Truncation is the wrap-around the stamps are made for.
    clock_base().elapsed().as_micros() as u32
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(NonZeroU32::new(now_us()).unwrap_or(NonZeroU32::MIN))
    }

    /// Microseconds since the stamp.
    pub fn elapsed_us(self) -> u64 {
        u64::from(now_us().wrapping_sub(self.0.get()))
    }
}

/// Shards of the histogram: each thread writes to its own (most of the time), so
/// connections on different runtime threads do not contend for one cache line.
const SHARDS: usize = 8;

/// A histogram of publish-to-write latency, updated with relaxed atomics (no lock).
#[derive(Default)]
pub(crate) struct LatencyHistogram {
    shards: [Shard; SHARDS],
}

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// This thread's shard.
fn shard_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS;
    }
    INDEX.with(|index| *index)
}

/// The bucket of a latency of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    BUCKETS_US.partition_point(|&bound| bound < us)
}

/// Observations kept by one thread and added to the histogram at once: a write pass
/// observes once per socket, and adds its part's worth with a few atomics.
#[derive(Default)]
pub(crate) struct LatencyTally {
    buckets: [u64; BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl LatencyTally {
    pub fn observe(&mut self, stamp: Stamp) {
        let us = stamp.elapsed_us();
        self.buckets[bucket_of(us)] += 1;
        self.sum_us += us;
    }
}

impl LatencyHistogram {
    pub fn observe(&self, stamp: Stamp) {
        let us = stamp.elapsed_us();
        let shard = &self.shards[shard_index()];
        shard.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        shard.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds what `tally` observed and empties it.
    pub fn add(&self, tally: &mut LatencyTally) {
        let shard = &self.shards[shard_index()];
        for (bucket, count) in shard.buckets.iter().zip(&mut tally.buckets) {
            if *count > 0 {
                bucket.fetch_add(std::mem::take(count), Ordering::Relaxed);
            }
        }
        shard
            .sum_us
            .fetch_add(std::mem::take(&mut tally.sum_us), Ordering::Relaxed);
    }

    /// Per-bucket counts by upper bound in seconds (the encoder accumulates them),
    /// the count and the sum in seconds.
    fn read(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let buckets: Vec<(f64, u64)> = (0..=BUCKETS_US.len())
            .map(|i| {
                let bound = BUCKETS_US
                    .get(i)
                    .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
                let count = self
                    .shards
                    .iter()
                    .map(|s| s.buckets[i].load(Ordering::Relaxed));
                (bound, count.sum())
            })
            .collect();
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum_us: u64 = self
            .shards
            .iter()
            .map(|s| s.sum_us.load(Ordering::Relaxed))
            .sum();
        let sum = sum_us as f64 / 1e6;
        (buckets, count, sum)
    }
}

/// The body of `GET /metrics`.
pub(crate) fn render(shared: &Shared) -> String {
    let mut values = Vec::new();
    shared
        .counters
        .for_each_metric(|info, value| values.push((info, value)));
    Gauges::read(shared).for_each_metric(|info, value| values.push((info, value)));
    let (buckets, count, sum) = shared.latency.read();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        values,
        latency: Latency {
            buckets,
            count,
            sum,
        },
    }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// The metric name of a stats key: `total_connections` is `herald_connections`
/// (a counter, so exposed as `herald_connections_total`), the others keep their name.
pub(crate) fn metric_name(info: &MetricInfo) -> String {
    let field = match info.kind {
        Kind::Counter => info.field.strip_prefix("total_").unwrap_or(info.field),
        Kind::Gauge => info.field,
    };
    format!("{PREFIX}_{field}")
}

/// Values read once per scrape.
#[derive(Debug)]
struct Scrape {
    values: Vec<(&'static MetricInfo, u64)>,
    latency: Latency,
}

#[derive(Debug)]
struct Latency {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for &(info, value) in &self.values {
            let name = metric_name(info);
            let help = info.help.trim().trim_end_matches('.');
            match info.kind {
                Kind::Counter => {
                    let metric = ConstCounter::new(value);
                    metric.encode(encoder.encode_descriptor(
                        &name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
                Kind::Gauge => {
                    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                    metric.encode(encoder.encode_descriptor(
                        &name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
            }
        }
        let latency = &self.latency;
        encoder
            .encode_descriptor(
                &format!("{PREFIX}_publish_to_write_seconds"),
                "Time from a host call to the completed socket write of its message; one observation per write, for its oldest message",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(latency.sum, latency.count, &latency.buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;

    #[test]
    fn a_stamp_costs_a_frame_no_memory() {
        use crate::transport::wire::Frame;
        use tokio_tungstenite::tungstenite::Bytes;
        assert_eq!(
            std::mem::size_of::<Frame>(),
            std::mem::size_of::<Bytes>() + 8
        );
    }

    #[test]
    fn latency_observations_land_in_one_bucket_each() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Stamp::now());
        histogram.observe(Stamp::now());
        let (buckets, count, sum) = histogram.read();
        assert_eq!(count, 2);
        assert_eq!(buckets.len(), BUCKETS_US.len() + 1);
        assert!(buckets.last().unwrap().0.is_infinite());
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 2);
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(sum >= 0.0);
    }

    #[test]
    fn a_tally_adds_what_it_observed_once() {
        let histogram = LatencyHistogram::default();
        let mut tally = LatencyTally::default();
        let thirty_ms_ago = NonZeroU32::new(now_us().wrapping_sub(30_000)).unwrap();
        tally.observe(Stamp(thirty_ms_ago));
        tally.observe(Stamp(thirty_ms_ago));
        tally.observe(Stamp::now());
        histogram.add(&mut tally);
        histogram.add(&mut tally);
        let (buckets, count, sum) = histogram.read();
        assert_eq!(count, 3);
        // 25 ms < 30 ms (plus however long this took) <= 50 ms
        let fifty_ms = buckets.iter().find(|b| b.0 == 0.05).unwrap();
        assert_eq!(fifty_ms.1, 2, "{buckets:?}");
        assert!((0.06..0.1).contains(&sum), "{sum}");
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let histogram = LatencyHistogram::default();
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 3 {
                scope.spawn(|| (0..100).for_each(|_| histogram.observe(Stamp::now())));
            }
        });
        let (buckets, count, _) = histogram.read();
        assert_eq!(count, 100 * (SHARDS as u64 + 3));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), count);
    }

    #[test]
    fn a_stamp_measures_elapsed_time() {
        let stamp = Stamp::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let us = stamp.elapsed_us();
        assert!((2_000..10_000_000).contains(&us), "{us}");
    }

    #[test]
    fn counters_are_named_without_a_total_prefix() {
        let names: Vec<String> = Counters::METRICS.iter().map(metric_name).collect();
        assert!(names.contains(&"herald_connections".to_string()));
        assert!(names.contains(&"herald_active_connections".to_string()));
        assert!(names.contains(&"herald_evictions".to_string()));
    }
}
