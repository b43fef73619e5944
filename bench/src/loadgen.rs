//! Load generation that accounts for coordinated omission.
//!
//! Open loop: request `i` has an intended start `t0 + i / rate`. A scheduler wakes on a 1 ms
//! tick, launches every request whose intended start has passed, and each request's latency
//! is measured from its *intended* start, so a stalled server is charged for the requests it
//! delayed (as in wrk2). Intended starts are quantised to the tick the scheduler meant to
//! wake at, not the tick it actually woke at, so scheduler lateness is charged too. The 1 ms
//! quantisation applies equally to the baseline and the gateway runs measured beside it.
//!
//! Closed loop (`closed_loop`) is used for the concurrency-1 and max-throughput scenarios.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

/// Highest latency the histograms track, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Requests allowed in flight before the generator counts new ones as failed instead of
/// queueing them (so the generator itself never grows without bound).
const MAX_IN_FLIGHT: u64 = 20_000;

/// The outcome of one run.
#[derive(Clone)]
pub struct RunResult {
    /// Latency from intended start to completion, microseconds, successful requests only.
    pub hist: Histogram<u64>,
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed or were shed.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunResult {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A percentile in microseconds.
    pub fn us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Runs `call` open-loop at `rate` requests per second for `duration`.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, call: F) -> RunResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let hist = Arc::new(Mutex::new(new_hist()));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let t0 = Instant::now();
    let tick = Duration::from_millis(1);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::from_std(t0), tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0u64;
    let mut tasks = Vec::with_capacity(total as usize);
    let mut tick_no = 0u64;
    while next < total {
        interval.tick().await;
        let tick_time = t0 + tick * tick_no as u32;
        tick_no += 1;
        let due = ((tick_time - t0).as_secs_f64() * rate).floor() as u64 + 1;
        while next < total.min(due) {
            let i = next;
            next += 1;
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (call, hist, ok, errors, in_flight) = (
                call.clone(),
                hist.clone(),
                ok.clone(),
                errors.clone(),
                in_flight.clone(),
            );
            let intended = tick_time;
            tasks.push(tokio::spawn(async move {
                let success = call(i).await;
                let us = intended.elapsed().as_micros() as u64;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if success {
                    ok.fetch_add(1, Ordering::Relaxed);
                    let _ = hist.lock().await.record(us.clamp(1, MAX_LATENCY_US));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed();
    let hist = hist.lock().await.clone();
    RunResult {
        hist,
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
    }
}

/// Runs `workers` loops, each calling `call` back to back, for `duration` (or `max_requests`
/// per worker). Latency is per request (there is no schedule to omit).
pub async fn closed_loop<F, Fut>(
    workers: usize,
    duration: Duration,
    max_requests: u64,
    call: F,
) -> RunResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut i = 0u64;
            while t0.elapsed() < duration && i < max_requests {
                let start = Instant::now();
                let success = call(w, i).await;
                i += 1;
                if success {
                    ok += 1;
                    let _ =
                        hist.record((start.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US));
                } else {
                    errors += 1;
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut hist = new_hist();
    let (mut ok, mut errors) = (0, 0);
    for h in handles {
        if let Ok((h, o, e)) = h.await {
            let _ = hist.add(&h);
            ok += o;
            errors += e;
        }
    }
    RunResult {
        hist,
        ok,
        errors,
        elapsed: t0.elapsed(),
    }
}
