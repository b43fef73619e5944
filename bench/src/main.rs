//! `exai-bench`: measures exai against DESIGN §9's targets, each beside a baseline measured
//! in the same run, and writes `BENCHMARKS.md`.
//!
//! Run it through `scripts/bench` (which builds in release mode first). Scenarios:
//! 0. `nginx`: exai beside nginx (canned upstream and a `proxy_pass` hop), driven by wrk,
//!    and where exai's CPU goes at a fixed open-loop rate ([`vs_nginx`]);
//! 1. gateway overhead (mock upstream direct vs `/v1` vs `/ws`, both cache misses), SQLite
//!    and PostgreSQL;
//! 2. cache hit path; 3. event ingest vs a bare `COPY`; 4. dashboard fan-out;
//! 5. soak; 6. PostgreSQL outage under load.
//!
//! With `--compare-bin PATH`, only the before/after comparison runs ([`compare`]): `/v1` of
//! that binary beside this build's, written as one marked section of the report.

mod clients;
mod compare;
mod fanout;
mod ingest;
mod loadgen;
mod nginx;
mod procs;
mod profile;
mod rawload;
mod report;
mod vs_nginx;
mod wrk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use exai_testkit::proxy;
use serde_json::Value;

use clients::{WsClient, chat_body, post_chat};
use loadgen::{RunResult, closed_loop, open_loop};
use procs::{Proc, dir_bytes, exai_binary, free_port, wait_ok};
use report::{Report, Row};

/// Model the mock upstream answers normally.
const MODEL: &str = "bench-echo";
/// Token the benchmark's exai instances require.
const TOKEN: &str = "bench-token-0123456789abcdef";
/// PostgreSQL admin URL.
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "exai-bench")]
struct Opts {
    /// Short runs (under ~3 minutes); numbers are indicative only.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Soak length in minutes (DESIGN asks for 30; the default keeps `all` near 20 minutes).
    #[arg(long)]
    soak_minutes: Option<f64>,
    /// Length of the PostgreSQL outage in seconds (DESIGN: 300).
    #[arg(long)]
    outage_secs: Option<u64>,
    /// Rows already in the table for the large flush-latency point (DESIGN: 10 million).
    #[arg(long)]
    big_rows: Option<u64>,
    /// Only these scenarios (comma-separated: nginx,overhead,cache,ingest,fanout,soak,outage).
    #[arg(long)]
    only: Option<String>,
    /// The command line to print in the report.
    #[arg(long, default_value = "scripts/bench")]
    command: String,
    /// Compare `/v1` of this exai binary (e.g. the build before a change) with this build's,
    /// and write only that section into the report (nothing else runs).
    #[arg(long)]
    compare_bin: Option<PathBuf>,
}

/// Everything the scenarios share.
struct Ctx {
    /// Options.
    opts: Opts,
    /// The release `exai` binary.
    exai: PathBuf,
    /// Scratch directory for data dirs and logs.
    work: PathBuf,
    /// The mock upstream's port.
    mock_port: u16,
    /// HTTP client used for every HTTP call.
    client: reqwest::Client,
}

impl Ctx {
    fn secs(&self, full: u64, quick: u64) -> Duration {
        Duration::from_secs(if self.opts.quick { quick } else { full })
    }

    fn wants(&self, name: &str) -> bool {
        self.opts
            .only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == name))
    }

    /// Starts exai against `database_url`, returning the process, its port and data dir.
    async fn start_exai(
        &self,
        label: &str,
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Proc, u16, PathBuf)> {
        self.start_exai_bin(&self.exai, label, database_url, extra)
            .await
    }

    /// [`Ctx::start_exai`] with another exai binary.
    async fn start_exai_bin(
        &self,
        bin: &Path,
        label: &str,
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Proc, u16, PathBuf)> {
        let port = free_port()?;
        let data = self.work.join(format!("data-{label}-{port}"));
        std::fs::create_dir_all(&data)?;
        let mut env: HashMap<String, String> = [
            ("EXAI_WS_PORT", port.to_string()),
            ("EXAI_WS_TOKEN", TOKEN.to_owned()),
            ("EXAI_DATA_DIR", data.display().to_string()),
            ("EXAI_DATABASE_URL", database_url.to_owned()),
            ("EXAI_INSTANCE", format!("bench-{label}")),
            ("EXAI_LOG", "warn".to_owned()),
            (
                "CUSTOM_API_URL",
                format!("http://127.0.0.1:{}/v1", self.mock_port),
            ),
            ("CUSTOM_MODEL_NAME", MODEL.to_owned()),
            ("EXAI_DEFAULT_MODEL", MODEL.to_owned()),
            // Benchmark load comes from one IP over many connections; lift the /ws limits
            // meant for editors so the gateway itself is what is measured.
            ("EXAI_WS_SESSION_MAX_INFLIGHT", "4096".to_owned()),
            ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "16384".to_owned()),
            ("EXAI_WS_MAX_CONNECTIONS_PER_IP", "4096".to_owned()),
            ("EXAI_WS_MAX_CONNECTIONS", "8192".to_owned()),
            ("EXAI_WS_SESSION_RATE", "1000000".to_owned()),
            ("EXAI_WS_SESSION_BURST", "1000000".to_owned()),
            ("EXAI_WS_IP_RATE", "1000000".to_owned()),
            ("EXAI_WS_IP_BURST", "1000000".to_owned()),
            ("EXAI_SHUTDOWN_READY_DELAY_MS", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let log = self.work.join(format!("exai-{label}-{port}.log"));
        let proc = Proc::spawn(&format!("exai-{label}"), bin, &["serve"], &env, &log)?;
        wait_ok(
            &self.client,
            &format!("http://127.0.0.1:{port}/health/ready"),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("exai ({label}) did not become ready; see {}", log.display()))?;
        Ok((proc, port, data))
    }
}

fn v1_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/v1/chat/completions")
}

/// Baseline and gateway runs for one load shape.
async fn run_http(
    ctx: &Ctx,
    url: String,
    token: Option<&'static str>,
    load: Load,
    unique: bool,
) -> RunResult {
    let client = ctx.client.clone();
    let url = Arc::new(url);
    match load {
        Load::Closed {
            workers,
            duration,
            max,
        } => {
            closed_loop(workers, duration, max, move |w, i| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    post_chat(
                        &client,
                        &url,
                        token,
                        chat_body(MODEL, (w as u64) << 32 | i, unique),
                    )
                    .await
                }
            })
            .await
        }
        Load::Open { rate, duration } => {
            open_loop(rate, duration, move |i| {
                let (client, url) = (client.clone(), url.clone());
                async move { post_chat(&client, &url, token, chat_body(MODEL, i, unique)).await }
            })
            .await
        }
    }
}

async fn run_ws(port: u16, load: Load, unique: bool) -> anyhow::Result<RunResult> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let conns = match load {
        Load::Closed { workers, .. } => workers,
        Load::Open { rate, .. } => ((rate / 250.0).ceil() as usize).clamp(1, 32),
    };
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(WsClient::connect(&url, Some(TOKEN)).await?);
    }
    let clients = Arc::new(clients);
    Ok(match load {
        Load::Closed {
            workers,
            duration,
            max,
        } => {
            closed_loop(workers, duration, max, move |w, i| {
                let c = clients[w % clients.len()].clone();
                async move { c.chat(MODEL, (w as u64) << 32 | i, unique).await }
            })
            .await
        }
        Load::Open { rate, duration } => {
            open_loop(rate, duration, move |i| {
                let c = clients[i as usize % clients.len()].clone();
                async move { c.chat(MODEL, i, unique).await }
            })
            .await
        }
    })
}

/// A load shape.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `workers` back-to-back loops.
    Closed {
        workers: usize,
        duration: Duration,
        max: u64,
    },
    /// A fixed arrival rate.
    Open { rate: f64, duration: Duration },
}

impl Load {
    fn label(&self) -> String {
        match self {
            Load::Closed { workers, .. } => format!("c={workers}"),
            Load::Open { rate, .. } => format!("{rate:.0} req/s"),
        }
    }
}

/// Scenario 1: gateway overhead on one backend.
async fn overhead(
    ctx: &Ctx,
    report: &mut Report,
    backend: &str,
    database_url: &str,
) -> anyhow::Result<()> {
    let (exai, port, _) = ctx.start_exai(backend, database_url, &[]).await?;
    let mock = format!("http://127.0.0.1:{}/v1/chat/completions", ctx.mock_port);
    // Warm up connections, JIT-free but caches, pools and the registry.
    run_http(
        ctx,
        mock.clone(),
        None,
        Load::Closed {
            workers: 4,
            duration: Duration::from_secs(1),
            max: u64::MAX,
        },
        true,
    )
    .await;
    run_http(
        ctx,
        v1_url(port),
        Some(TOKEN),
        Load::Closed {
            workers: 4,
            duration: Duration::from_secs(1),
            max: u64::MAX,
        },
        true,
    )
    .await;

    let mut loads = vec![Load::Closed {
        workers: 1,
        duration: ctx.secs(10, 3),
        max: 20_000,
    }];
    for rate in [500.0, 2000.0, 5000.0] {
        loads.push(Load::Open {
            rate,
            duration: ctx.secs(10, 3),
        });
    }
    for load in loads {
        let base = run_http(ctx, mock.clone(), None, load, true).await;
        let calls = mock_requests(ctx).await?;
        let v1 = run_http(ctx, v1_url(port), Some(TOKEN), load, true).await;
        let v1_calls = mock_requests(ctx).await? - calls;
        let ws = run_ws(port, load, true).await?;
        let ws_calls = mock_requests(ctx).await? - calls - v1_calls;
        report.overhead.push(Row::overhead(
            backend,
            &miss_label("/v1", v1_calls, &v1),
            &load.label(),
            &base,
            &v1,
        ));
        report.overhead.push(Row::overhead(
            backend,
            &miss_label("/ws", ws_calls, &ws),
            &load.label(),
            &base,
            &ws,
        ));
    }
    let max = Load::Closed {
        workers: 32,
        duration: ctx.secs(10, 3),
        max: u64::MAX,
    };
    let base = run_http(ctx, mock.clone(), None, max, true).await;
    let v1 = run_http(ctx, v1_url(port), Some(TOKEN), max, true).await;
    report.throughput.push((
        backend.to_owned(),
        base.throughput(),
        v1.throughput(),
        v1.errors,
    ));
    exai.stop(Duration::from_secs(30))?;
    Ok(())
}

/// Chat requests the mock upstream has answered so far.
async fn mock_requests(ctx: &Ctx) -> anyhow::Result<u64> {
    let stats: Value = ctx
        .client
        .get(format!("http://127.0.0.1:{}/__mock/stats", ctx.mock_port))
        .send()
        .await?
        .json()
        .await?;
    stats["requests"]
        .as_u64()
        .context("no requests in the mock's stats")
}

/// A surface's label with what the upstream saw: `(miss)` when every successful call reached
/// the upstream, else the share that did.
fn miss_label(surface: &str, upstream_calls: u64, run: &RunResult) -> String {
    if upstream_calls >= run.ok {
        format!("{surface} (miss)")
    } else {
        format!(
            "{surface} ({:.0} % miss)",
            upstream_calls as f64 * 100.0 / run.ok.max(1) as f64
        )
    }
}

/// Scenario 2: a cached answer through both surfaces.
async fn cache_hit(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let url = format!("sqlite://{}/cache.db", ctx.work.display());
    let (exai, port, _) = ctx.start_exai("cache", &url, &[]).await?;
    let mock = format!("http://127.0.0.1:{}/v1/chat/completions", ctx.mock_port);
    let load = Load::Closed {
        workers: 1,
        duration: ctx.secs(10, 3),
        max: 20_000,
    };
    // Prime the cache through both surfaces.
    run_http(
        ctx,
        v1_url(port),
        Some(TOKEN),
        Load::Closed {
            workers: 1,
            duration: Duration::from_secs(1),
            max: 10,
        },
        false,
    )
    .await;
    run_ws(
        port,
        Load::Closed {
            workers: 1,
            duration: Duration::from_secs(1),
            max: 10,
        },
        false,
    )
    .await?;
    let base = run_http(ctx, mock, None, load, false).await;
    let v1 = run_http(ctx, v1_url(port), Some(TOKEN), load, false).await;
    let ws = run_ws(port, load, false).await?;
    report.cache.push(Row::overhead(
        "sqlite",
        "/v1 (hit)",
        &load.label(),
        &base,
        &v1,
    ));
    report.cache.push(Row::overhead(
        "sqlite",
        "/ws (hit)",
        &load.label(),
        &base,
        &ws,
    ));
    exai.stop(Duration::from_secs(30))?;
    Ok(())
}

/// exai's `/health` document.
async fn health(ctx: &Ctx, port: u16) -> anyhow::Result<Value> {
    Ok(ctx
        .client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await?
        .json()
        .await?)
}

/// Reads exai's recorded-event counter from `/health`.
async fn recorded(ctx: &Ctx, port: u16) -> anyhow::Result<(u64, Value)> {
    let h = health(ctx, port).await?;
    let n = h["components"]["events"]["recorded"]
        .as_u64()
        .context("no components.events.recorded in /health")?;
    Ok((n, h))
}

/// Waits until the pipeline has nothing buffered or spilled.
async fn wait_drained(ctx: &Ctx, port: u16, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (_, h) = recorded(ctx, port).await?;
        let p = &h["components"]["pipeline"];
        let buffered = p["buffered"].as_u64().unwrap_or(u64::MAX);
        let spilled = p["spilled_bytes"].as_u64().unwrap_or(u64::MAX);
        let queued = h["components"]["events"]["queued"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if buffered == 0 && spilled == 0 && queued == 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "pipeline did not drain within {within:?}: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the spill journal is empty, returning how long that took.
async fn wait_journal_empty(ctx: &Ctx, port: u16, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (_, h) = recorded(ctx, port).await?;
        if h["components"]["pipeline"]["spilled_bytes"].as_u64() == Some(0) {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "journal not drained within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pg_count(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM monitoring.monitoring_events")
        .fetch_one(&mut c)
        .await?;
    Ok(n.0)
}

async fn create_db(name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(PG_ADMIN)
        .await
        .context("PostgreSQL at 127.0.0.1:5432")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await?;
    Ok(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

/// Scenarios 5 and 6: steady load for a while, optionally with PostgreSQL cut off mid-run.
async fn steady(
    ctx: &Ctx,
    report: &mut Report,
    outage: Option<Duration>,
    total: Duration,
) -> anyhow::Result<()> {
    let label = if outage.is_some() { "outage" } else { "soak" };
    let db = create_db(&format!("exai_bench_{label}")).await?;
    let proxy = proxy::TcpProxy::start("127.0.0.1:5432".parse()?)?;
    let via = db.replace("127.0.0.1:5432", &proxy.addr().to_string());
    // Every prompt is unique, so the L1 cache grows until entries expire. The TTL is at most
    // a quarter of the run, so the second half of the run shows the steady state.
    let cache_ttl_s = (total.as_secs() / 4).clamp(1, 600);
    let (exai, port, data) = ctx
        .start_exai(
            label,
            &via,
            &[
                ("EXAI_METRICS_MAX_BUFFERED", "20000"),
                ("SEMANTIC_CACHE_TTL_SECONDS", &cache_ttl_s.to_string()),
            ],
        )
        .await?;
    let pid = exai.pid();
    let rss_start = exai.rss_kib();
    let started = Instant::now();
    let peak_journal = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let samples = Arc::new(std::sync::Mutex::new(vec![(0.0, rss_start)]));
    let sampler = {
        let (samples, peak_journal, data) = (samples.clone(), peak_journal.clone(), data.clone());
        tokio::spawn(async move {
            loop {
                let rss = procs::rss_kib(pid);
                if let Ok(mut s) = samples.lock() {
                    s.push((started.elapsed().as_secs_f64(), rss));
                }
                peak_journal.fetch_max(dir_bytes(&data), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let load_task = {
        let client = ctx.client.clone();
        let url = Arc::new(v1_url(port));
        tokio::spawn(open_loop(100.0, total, move |i| {
            let (client, url) = (client.clone(), url.clone());
            async move { post_chat(&client, &url, Some(TOKEN), chat_body(MODEL, i, true)).await }
        }))
    };
    let mut journal_drain = None;
    if let Some(outage) = outage {
        let lead = (total.saturating_sub(outage)) / 2;
        tokio::time::sleep(lead).await;
        proxy.set_down(true);
        tokio::time::sleep(outage).await;
        proxy.set_down(false);
        // Time from the store's return until the journal is empty, with load still running.
        journal_drain = Some(wait_journal_empty(ctx, port, Duration::from_secs(600)).await?);
    }
    let load = load_task.await?;
    let drain = wait_drained(ctx, port, Duration::from_secs(600)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (produced, _) = recorded(ctx, port).await?;
    let persisted = pg_count(&db).await?;
    let rss_end = exai.rss_kib();
    sampler.abort();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    // RSS half-way through the load, once the cache has passed its TTL at least once.
    let half = total.as_secs_f64() / 2.0;
    let rss_mid = samples
        .iter()
        .find(|(t, _)| *t >= half)
        .map_or(rss_start, |(_, rss)| *rss);
    let rss_peak = samples
        .iter()
        .map(|(_, rss)| *rss)
        .max()
        .unwrap_or(rss_start);
    exai.stop(Duration::from_secs(30))?;
    let persisted_after_stop = pg_count(&db).await?;
    report.steady.push(report::Steady {
        label: label.to_owned(),
        minutes: total.as_secs_f64() / 60.0,
        outage_s: outage.map(|o| o.as_secs()),
        requests_ok: load.ok,
        requests_failed: load.errors,
        rss_start_kib: rss_start,
        rss_mid_kib: rss_mid,
        rss_end_kib: rss_end,
        rss_peak_kib: rss_peak.max(rss_end),
        cache_ttl_s,
        journal_peak_bytes: peak_journal.load(std::sync::atomic::Ordering::Relaxed),
        drain_s: drain.as_secs_f64(),
        journal_drain_s: journal_drain.map(|d| d.as_secs_f64()),
        produced,
        persisted: persisted as u64,
        persisted_after_stop: persisted_after_stop as u64,
    });
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let started = Instant::now();
    let work = std::env::temp_dir().join(format!("exai-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()?;
    let exai = exai_binary()?;
    let mock_port = free_port()?;
    let mock = Proc::spawn(
        "mock-upstream",
        &exai,
        &["mock-upstream", "--port", &mock_port.to_string()],
        &HashMap::new(),
        &work.join("mock.log"),
    )?;
    wait_ok(
        &client,
        &format!("http://127.0.0.1:{mock_port}/__mock/stats"),
        Duration::from_secs(20),
    )
    .await?;
    let ctx = Ctx {
        opts,
        exai,
        work: work.clone(),
        mock_port,
        client,
    };
    if let Some(before) = ctx.opts.compare_bin.clone() {
        let section = compare::run(&ctx, &before).await;
        drop(mock);
        let section = section?;
        let doc = std::fs::read_to_string(&ctx.opts.out).unwrap_or_default();
        write(&ctx.opts.out, &compare::splice(&doc, &section))?;
        eprintln!(
            "[bench] wrote the comparison into {} in {:.0} s",
            ctx.opts.out.display(),
            started.elapsed().as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    let mut report = Report::new(ctx.opts.quick, &ctx.opts.command);

    if ctx.wants("nginx") {
        eprintln!("[bench] against nginx (wrk)");
        match vs_nginx::run(&ctx).await {
            Ok(f) => report.nginx = Some(f),
            Err(e) => report.note("against nginx", Err(e)),
        }
    }
    // A scenario that fails is reported as such in BENCHMARKS.md; the others still run.
    if ctx.wants("overhead") {
        eprintln!("[bench] gateway overhead (SQLite)");
        let url = format!("sqlite://{}/overhead.db", work.display());
        let r = overhead(&ctx, &mut report, "sqlite", &url).await;
        report.note("gateway overhead (SQLite)", r);
        eprintln!("[bench] gateway overhead (PostgreSQL)");
        let r = match create_db("exai_bench_overhead").await {
            Ok(db) => overhead(&ctx, &mut report, "postgres", &db).await,
            Err(e) => Err(e),
        };
        report.note("gateway overhead (PostgreSQL)", r);
    }
    if ctx.wants("cache") {
        eprintln!("[bench] cache hit path");
        let r = cache_hit(&ctx, &mut report).await;
        report.note("cache hit path", r);
    }
    if ctx.wants("ingest") {
        eprintln!("[bench] event ingest");
        let big = ctx
            .opts
            .big_rows
            .unwrap_or(if ctx.opts.quick { 200_000 } else { 10_000_000 });
        match ingest::run(&work, ctx.opts.quick, big).await {
            Ok(i) => report.ingest = i,
            Err(e) => report.note("event ingest", Err(e)),
        }
    }
    if ctx.wants("fanout") {
        eprintln!("[bench] dashboard fan-out");
        let r = fanout::fanout(&ctx, &mut report).await;
        report.note("dashboard fan-out", r);
    }
    if ctx.wants("outage") {
        let secs = ctx
            .opts
            .outage_secs
            .unwrap_or(if ctx.opts.quick { 10 } else { 300 });
        let outage = Duration::from_secs(secs);
        eprintln!("[bench] PostgreSQL outage of {outage:?} under load");
        let r = steady(&ctx, &mut report, Some(outage), outage + ctx.secs(60, 10)).await;
        report.note("outage", r);
    }
    if ctx.wants("soak") {
        let minutes = ctx
            .opts
            .soak_minutes
            .unwrap_or(if ctx.opts.quick { 0.3 } else { 5.0 });
        eprintln!("[bench] soak for {minutes} min");
        let r = steady(
            &ctx,
            &mut report,
            None,
            Duration::from_secs_f64(minutes * 60.0),
        )
        .await;
        report.note("soak", r);
    }
    drop(mock);
    report.total = started.elapsed();
    let mut text = report.render();
    // A before/after section written by `--compare-bin` is kept.
    if let Ok(old) = std::fs::read_to_string(&ctx.opts.out)
        && let Some(section) = compare::extract(&old)
    {
        text = compare::splice(&text, section);
    }
    // `--only nginx` on an existing full report replaces that scenario's section and its
    // target rows in place, so it can be re-run alone after a product change.
    let spliced = match (&report.nginx, ctx.opts.only.as_deref()) {
        (Some(f), Some("nginx")) => std::fs::read_to_string(&ctx.opts.out)
            .ok()
            .and_then(|old| report::splice_nginx(&old, f, &ctx.opts.command)),
        _ => None,
    };
    if spliced.is_some() {
        eprintln!("[bench] replacing the nginx section of the existing report");
    }
    write(&ctx.opts.out, spliced.as_deref().unwrap_or(&text))?;
    if let Some(long) = report.long_soak() {
        write(Path::new(report::LONG_SOAK_FILE), &long)?;
        eprintln!("[bench] wrote {}", report::LONG_SOAK_FILE);
    }
    eprintln!(
        "[bench] wrote {} in {:.0} s",
        ctx.opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
