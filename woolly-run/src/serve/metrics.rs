//! Prometheus metrics: request counts by endpoint and status, latency histograms, and
//! the scheduler's counters and gauges, written in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use woolly_model::batching::SchedulerHandle;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A cumulative histogram of durations.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bound. (BUCKETS.len(),)
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (c, &b) in self.counts.iter_mut().zip(&BUCKETS) {
            if s <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, b) in self.counts.iter().zip(&BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (endpoint, status) -> responses.
    requests: BTreeMap<(&'static str, u16), u64>,
    ttft: Histogram,
    inter_token: Histogram,
    duration: Histogram,
}

/// The HTTP side's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Counts a response.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.with(|m| *m.requests.entry((endpoint, status)).or_default() += 1);
    }

    /// Time from the request's arrival to its first token.
    pub fn time_to_first_token(&self, d: Duration) {
        self.with(|m| m.ttft.observe(d));
    }

    /// Time between two tokens of one stream.
    pub fn inter_token(&self, d: Duration) {
        self.with(|m| m.inter_token.observe(d));
    }

    /// Time from arrival to the last event of a generation request.
    pub fn duration(&self, d: Duration) {
        self.with(|m| m.duration.observe(d));
    }

    /// The text exposition of everything, the scheduler's counters included when the
    /// model is loaded.
    pub fn render(&self, sched: Option<&SchedulerHandle>) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "woolly_model_loaded",
            "1 once the model is loaded and requests are served.",
            "gauge",
            u64::from(sched.is_some()),
        );
        self.with(|m| {
            let _ = writeln!(
                out,
                "# HELP woolly_requests_total HTTP responses by endpoint and status.\n# TYPE woolly_requests_total counter"
            );
            for ((endpoint, status), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "woolly_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
            m.ttft.write(
                &mut out,
                "woolly_time_to_first_token_seconds",
                "Time from a request's arrival to its first generated token.",
            );
            m.inter_token.write(
                &mut out,
                "woolly_inter_token_seconds",
                "Time between consecutive generated tokens of a request.",
            );
            m.duration.write(
                &mut out,
                "woolly_request_duration_seconds",
                "Time from a generation request's arrival to its end.",
            );
        });
        if let Some(h) = sched {
            let s = h.stats();
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let rows: [(&str, &str, &str, u64); 12] = [
                (
                    "woolly_slots_total",
                    "KV-cache slots (--parallel).",
                    "gauge",
                    h.options().parallel as u64,
                ),
                (
                    "woolly_slots_busy",
                    "Slots holding a request.",
                    "gauge",
                    s.active.load(Ordering::Relaxed) as u64,
                ),
                (
                    "woolly_queue_depth",
                    "Requests waiting for a slot.",
                    "gauge",
                    s.queue_depth() as u64,
                ),
                (
                    "woolly_requests_completed_total",
                    "Generation requests that ran to their end.",
                    "counter",
                    load(&s.completed),
                ),
                (
                    "woolly_requests_cancelled_total",
                    "Generation requests stopped because the client went away.",
                    "counter",
                    load(&s.cancelled),
                ),
                (
                    "woolly_requests_failed_total",
                    "Generation requests that failed.",
                    "counter",
                    load(&s.failed),
                ),
                (
                    "woolly_prompt_tokens_total",
                    "Prompt tokens evaluated.",
                    "counter",
                    load(&s.prompt_tokens),
                ),
                (
                    "woolly_prompt_tokens_cached_total",
                    "Prompt tokens reused from a slot's cache.",
                    "counter",
                    load(&s.cached_prompt_tokens),
                ),
                (
                    "woolly_generated_tokens_total",
                    "Tokens generated.",
                    "counter",
                    load(&s.generated_tokens),
                ),
                (
                    "woolly_batch_steps_total",
                    "Forward passes of the scheduler.",
                    "counter",
                    load(&s.steps),
                ),
                (
                    "woolly_batch_tokens_total",
                    "Tokens evaluated over all forward passes.",
                    "counter",
                    load(&s.batch_tokens),
                ),
                (
                    "woolly_ctx_per_slot",
                    "Positions per slot (--ctx).",
                    "gauge",
                    h.options().n_ctx as u64,
                ),
            ];
            for (name, help, kind, v) in rows {
                gauge(&mut out, name, help, kind, v);
            }
        }
        out
    }
}
