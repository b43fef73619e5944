//! Scenario 4: dashboard fan-out (DESIGN §9: p99 ≤ 50 ms at 1,000 clients).

use super::*;

/// Scenario 4: many dashboard clients while traffic flows.
pub(crate) async fn fanout(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let url = format!("sqlite://{}/fanout.db", ctx.work.display());
    let (exai, port, _) = ctx.start_exai("fanout", &url, &[]).await?;
    let clients = if ctx.opts.quick { 200 } else { 1000 };
    let hist = Arc::new(tokio::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
    ));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..clients {
        let dash = format!("ws://127.0.0.1:{port}/ws/dashboard");
        let (ws, _) = tokio_tungstenite::connect_async(dash)
            .await
            .context("dashboard connect")?;
        let (_, mut stream) = ws.split();
        let (hist, delivered, stop) = (hist.clone(), delivered.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(text) = m.to_text() else { continue };
                // Cheap: the event's `ts` is the first "ts": after the `event` prefix, so the
                // reader never parses whole messages (1,000 readers share this process's
                // cores with exai; a full JSON parse per delivery would measure the reader).
                let Some(rest) = text.strip_prefix(r#"{"type":"event","event":"#) else {
                    continue;
                };
                let Some(ts) = event_ts(rest) else {
                    continue;
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                let us = (now - ts * 1000).max(1) as u64;
                delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = hist.lock().await.record(us.min(60_000_000));
            }
        }));
    }
    let mock = format!("http://127.0.0.1:{}/v1/chat/completions", ctx.mock_port);
    // 25 req/s records about 100 events/s: with 1,000 clients, ~100k deliveries/s.
    let load = Load::Open {
        rate: 25.0,
        duration: ctx.secs(10, 5),
    };
    let base = run_http(ctx, mock, None, load, true).await;
    let started = Instant::now();
    // Own threads only: the exai instances are this process's children.
    let ticks = |pid: u32| crate::profile::process_ticks(pid) as f64 / crate::profile::TICKS_PER_S;
    let (exai_cpu, own_cpu) = (ticks(exai.pid()), ticks(std::process::id()));
    let v1 = run_http(ctx, v1_url(port), Some(TOKEN), load, true).await;
    let secs = started.elapsed().as_secs_f64();
    let cores = (
        (ticks(exai.pid()) - exai_cpu) / secs,
        (ticks(std::process::id()) - own_cpu) / secs,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.abort();
    }
    let h = hist.lock().await.clone();
    report.fanout = Some(report::Fanout {
        clients,
        deliveries_per_s: delivered.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        samples: h.len(),
        gateway: Row::overhead("sqlite", "/v1 during fan-out", &load.label(), &base, &v1),
        cores,
    });
    exai.stop(Duration::from_secs(30))?;
    Ok(())
}

/// The first `"ts":<integer>` in `json`.
fn event_ts(json: &str) -> Option<i64> {
    let at = json.find("\"ts\":")? + 5;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
