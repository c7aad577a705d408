//! Counters and histograms for `GET /metrics`, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const ROWS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const TOKENS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];

/// A Prometheus histogram: counts per upper bound, plus sum and count.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines; `labels` is empty or `key="value",`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Everything `/metrics` reports; shared by the HTTP handlers and the inference thread.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_duration: Mutex<BTreeMap<String, Histogram>>,
    queue_duration: Mutex<Histogram>,
    batch_size: Mutex<Histogram>,
    batch_tokens: Mutex<Histogram>,
    inference_duration: Mutex<Histogram>,
    queue_size: AtomicUsize,
    dropped_items: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            request_duration: Mutex::default(),
            queue_duration: Mutex::new(Histogram::new(SECONDS)),
            batch_size: Mutex::new(Histogram::new(ROWS)),
            batch_tokens: Mutex::new(Histogram::new(TOKENS)),
            inference_duration: Mutex::new(Histogram::new(SECONDS)),
            queue_size: AtomicUsize::new(0),
            dropped_items: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// One answered request; its duration goes to the histogram only for embedding endpoints.
    pub fn observe_request(&self, endpoint: &str, status: u16, elapsed: Duration, timed: bool) {
        *lock(&self.requests).entry((endpoint.to_string(), status)).or_default() += 1;
        if timed {
            lock(&self.request_duration)
                .entry(endpoint.to_string())
                .or_insert_with(|| Histogram::new(SECONDS))
                .observe(elapsed.as_secs_f64());
        }
    }

    /// How long one input waited in the queue before its batch started.
    pub fn observe_queue(&self, waited: Duration) {
        lock(&self.queue_duration).observe(waited.as_secs_f64());
    }

    /// One batch: its rows, padded tokens (rows x longest row) and forward-pass time.
    pub fn observe_batch(&self, rows: usize, padded_tokens: usize, elapsed: Duration) {
        lock(&self.batch_size).observe(rows as f64);
        lock(&self.batch_tokens).observe(padded_tokens as f64);
        lock(&self.inference_duration).observe(elapsed.as_secs_f64());
    }

    pub fn set_queue_size(&self, items: usize) {
        self.queue_size.store(items, Ordering::Relaxed);
    }

    /// Inputs removed from the queue because their request was gone (client left or timed out).
    pub fn add_dropped(&self, items: usize) {
        self.dropped_items.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `in_flight` is the number of embedding requests being handled.
    pub fn render(&self, in_flight: usize) -> String {
        let mut out = String::new();
        header(&mut out, "llm2vec_requests_total", "counter", "Requests answered, by endpoint and status.");
        for ((endpoint, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(out, "llm2vec_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let name = "llm2vec_request_duration_seconds";
        header(&mut out, name, "histogram", "Embedding request latency, body read to response.");
        for (endpoint, h) in lock(&self.request_duration).iter() {
            h.render(&mut out, name, &format!("endpoint=\"{endpoint}\","));
        }
        let histograms = [
            ("llm2vec_queue_duration_seconds", "Time an input waited before its batch started.", &self.queue_duration),
            ("llm2vec_batch_size", "Inputs per inference batch.", &self.batch_size),
            ("llm2vec_batch_tokens", "Padded tokens (rows x longest row) per inference batch.", &self.batch_tokens),
            ("llm2vec_inference_duration_seconds", "Forward-pass time per batch.", &self.inference_duration),
        ];
        for (name, help, h) in histograms {
            header(&mut out, name, "histogram", help);
            lock(h).render(&mut out, name, "");
        }
        let gauges = [
            (
                "llm2vec_queue_size",
                "gauge",
                "Inputs waiting for a batch.",
                self.queue_size.load(Ordering::Relaxed) as u64,
            ),
            ("llm2vec_requests_in_flight", "gauge", "Embedding requests being handled.", in_flight as u64),
            (
                "llm2vec_dropped_inputs_total",
                "counter",
                "Queued inputs dropped because their request ended first (client gone or timed out).",
                self.dropped_items.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "k=\"v\",");
        assert_eq!(
            out,
            "x_bucket{k=\"v\",le=\"1\"} 1\nx_bucket{k=\"v\",le=\"2\"} 3\nx_bucket{k=\"v\",le=\"+Inf\"} 4\n\
             x_sum{k=\"v\"} 6.5\nx_count{k=\"v\"} 4\n"
        );
    }

    #[test]
    fn render_lists_every_family() {
        let m = Metrics::default();
        m.observe_request("/embed", 200, Duration::from_millis(3), true);
        m.observe_request("/health", 200, Duration::from_millis(1), false);
        m.observe_batch(4, 64, Duration::from_millis(20));
        m.add_dropped(2);
        let text = m.render(1);
        assert!(text.contains("llm2vec_requests_total{endpoint=\"/health\",status=\"200\"} 1"));
        assert!(text.contains("llm2vec_request_duration_seconds_count{endpoint=\"/embed\"} 1"));
        assert!(!text.contains("llm2vec_request_duration_seconds_count{endpoint=\"/health\"}"));
        assert!(text.contains("llm2vec_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("llm2vec_batch_tokens_sum 64"));
        assert!(text.contains("llm2vec_dropped_inputs_total 2"));
        assert!(text.contains("llm2vec_requests_in_flight 1"));
    }
}
