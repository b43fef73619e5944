//! Scenario `nginx`: exai beside nginx, driven by wrk (DESIGN §9, issue 18).
//!
//! nginx serves a canned chat completion (the baseline, called directly) and runs a plain
//! `proxy_pass` hop in front of it (the reference gateway). exai runs `/v1` against the same
//! canned upstream with the cache off and persistence on, once on SQLite and once on its own
//! PostgreSQL database, plus an instance with the cache on for the hit path. All instances run
//! side by side; each repetition measures every target in turn (the order reversed on odd
//! repetitions, so drift falls on all of them), and the report gives medians. Then a fixed
//! open-loop load runs against the SQLite instance while `perf` and `/proc` record where its
//! CPU goes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::nginx::{Nginx, Role, completion_body, request_body};
use crate::profile::{self, Bucket};
use crate::rawload;
use crate::wrk::{self, Post, WrkResult};
use crate::{Ctx, TOKEN, create_db, v1_url};

/// The open-loop rate the profile aims at (issue 18), req/s.
pub const PROFILE_RATE: f64 = 20_000.0;

/// A measured target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The canned nginx upstream, called directly.
    Direct,
    /// nginx `proxy_pass` in front of it.
    Hop,
    /// exai `/v1`, cache off, SQLite persistence.
    ExaiSqlite,
    /// exai `/v1`, cache off, PostgreSQL persistence.
    ExaiPostgres,
    /// exai `/v1`, cache on, the same prompt every time (SQLite persistence).
    ExaiHit,
}

impl Target {
    /// Its label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "nginx upstream, direct (baseline)",
            Target::Hop => "nginx proxy hop",
            Target::ExaiSqlite => "exai /v1, cache off, SQLite",
            Target::ExaiPostgres => "exai /v1, cache off, PostgreSQL",
            Target::ExaiHit => "exai /v1, cache hit (SQLite)",
        }
    }
}

/// Medians of one target's repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Median {
    /// p50 µs.
    pub p50: u64,
    /// p99 µs.
    pub p99: u64,
    /// req/s.
    pub rps: f64,
    /// Lowest and highest req/s over the repetitions.
    pub rps_range: (f64, f64),
    /// Errors over all repetitions.
    pub errors: u64,
}

fn median_u(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl Median {
    fn of(runs: &[WrkResult]) -> Median {
        let rps: Vec<f64> = runs.iter().map(WrkResult::rps).collect();
        Median {
            p50: median_u(runs.iter().map(|r| r.p50).collect()),
            p99: median_u(runs.iter().map(|r| r.p99).collect()),
            rps_range: (
                rps.iter().copied().fold(f64::INFINITY, f64::min),
                rps.iter().copied().fold(0.0, f64::max),
            ),
            rps: median_f(rps),
            errors: runs.iter().map(|r| r.errors).sum(),
        }
    }
}

/// The open-loop profile of the SQLite instance.
#[derive(Debug, Clone)]
pub struct ProfileRun {
    /// Rate asked for, req/s.
    pub rate: f64,
    /// Rate achieved (successful responses over the run), req/s.
    pub achieved: f64,
    /// Latency from intended start, p50/p99 µs.
    pub p50: u64,
    /// p99 µs.
    pub p99: u64,
    /// Failed requests.
    pub errors: u64,
    /// Connections.
    pub conns: usize,
    /// Seconds profiled.
    pub secs: u64,
    /// exai's CPU in cores over the profiled window (from /proc).
    pub cores: f64,
    /// Share of exai's CPU per thread name, from /proc.
    pub threads: Vec<(String, f64)>,
    /// The perf command (pid shown as `<exai>`).
    pub perf_command: String,
    /// perf's figures, or why there are none.
    pub perf: Result<profile::Profile, String>,
    /// Whether the VM exposes hardware counters.
    pub hardware_counters: bool,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Repetitions.
    pub reps: usize,
    /// Seconds per wrk run.
    pub secs: u64,
    /// Concurrency-1 medians.
    pub c1: Vec<(Target, Median)>,
    /// 32-connection medians.
    pub c32: Vec<(Target, Median)>,
    /// As `c32_cpu_us`, at concurrency 1.
    pub c1_cpu_us: Vec<(Target, f64)>,
    /// CPU the serving process (nginx with its workers, or exai) used per response in the
    /// 32-connection runs, median µs (from `/proc`; the upstream's share is not included).
    pub c32_cpu_us: Vec<(Target, f64)>,
    /// The profile, if it ran.
    pub profile: Option<ProfileRun>,
    /// Size of the canned answer, bytes.
    pub body_bytes: usize,
    /// Quick mode.
    pub quick: bool,
}

impl Figures {
    /// A concurrency-1 median.
    pub fn c1(&self, t: Target) -> Option<Median> {
        self.c1.iter().find(|(x, _)| *x == t).map(|(_, m)| *m)
    }

    /// A 32-connection median.
    pub fn c32(&self, t: Target) -> Option<Median> {
        self.c32.iter().find(|(x, _)| *x == t).map(|(_, m)| *m)
    }

    /// CPU µs per response of `t`'s serving process at concurrency 1.
    pub fn c1_cpu(&self, t: Target) -> Option<f64> {
        self.c1_cpu_us
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, v)| *v)
    }

    /// CPU µs per response of `t`'s serving process at 32 connections.
    pub fn c32_cpu(&self, t: Target) -> Option<f64> {
        self.c32_cpu_us
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, v)| *v)
    }

    /// Added p50/p99 of `t` over the direct baseline at concurrency 1, µs.
    pub fn added(&self, t: Target) -> Option<(i64, i64)> {
        let (b, g) = (self.c1(Target::Direct)?, self.c1(t)?);
        Some((g.p50 as i64 - b.p50 as i64, g.p99 as i64 - b.p99 as i64))
    }

    /// req/s of `t` over the nginx hop's at 32 connections.
    pub fn vs_hop(&self, t: Target) -> Option<f64> {
        let (h, g) = (self.c32(Target::Hop)?, self.c32(t)?);
        (h.rps > 0.0).then(|| g.rps / h.rps)
    }

    /// The profile's persistence share, if perf ran.
    pub fn persistence_share(&self) -> Option<f64> {
        let p = self.profile.as_ref()?.perf.as_ref().ok()?;
        p.buckets
            .iter()
            .find(|(b, _)| *b == Bucket::Persistence)
            .map(|(_, s)| *s)
    }
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Figures> {
    let dir = ctx.work.join("nginx");
    std::fs::create_dir_all(&dir)?;
    if !std::path::Path::new(wrk::WRK).exists() {
        bail!("{} not found: install the Debian package wrk", wrk::WRK);
    }
    let upstream = Nginx::start(&ctx.client, &dir, "nginx-upstream", Role::Upstream).await?;
    let hop = Nginx::start(&ctx.client, &dir, "nginx-hop", Role::Proxy(upstream.port)).await?;
    let canned = completion_body();
    for url in [upstream.chat_url(), hop.chat_url()] {
        let got = post(ctx, &url, None).await?;
        anyhow::ensure!(got.1 == canned, "{url} did not answer the canned body");
    }

    let base = format!("http://127.0.0.1:{}/v1", upstream.port);
    let off = [
        ("CUSTOM_API_URL", base.as_str()),
        ("EXAI_CACHE_ENABLED", "false"),
    ];
    let on = [("CUSTOM_API_URL", base.as_str())];
    let sqlite_url = format!("sqlite://{}/nginx-sqlite.db", ctx.work.display());
    let hit_url = format!("sqlite://{}/nginx-hit.db", ctx.work.display());
    let pg_url = create_db("exai_bench_nginx").await?;
    let (sqlite, sqlite_port, _) = ctx.start_exai("nginx-sqlite", &sqlite_url, &off).await?;
    let (pg, pg_port, _) = ctx.start_exai("nginx-postgres", &pg_url, &off).await?;
    let (hit, hit_port, _) = ctx.start_exai("nginx-hit", &hit_url, &on).await?;
    for (port, want_hit) in [(sqlite_port, false), (pg_port, false), (hit_port, false)] {
        let (cache, body) = post(ctx, &v1_url(port), Some(TOKEN)).await?;
        anyhow::ensure!(
            (cache.as_deref() == Some("l1")) == want_hit,
            "exai on port {port}: x-exai-cache {cache:?}"
        );
        anyhow::ensure!(
            body.contains("Connection pooling keeps"),
            "exai on port {port} did not relay the canned answer: {body}"
        );
    }
    // The hit instance now holds the prompt in L1.
    let (cache, _) = post(ctx, &v1_url(hit_port), Some(TOKEN)).await?;
    anyhow::ensure!(
        cache.as_deref() == Some("l1"),
        "the repeated prompt was not an L1 hit: {cache:?}"
    );

    let urls: HashMap<Target, String> = [
        (Target::Direct, upstream.chat_url()),
        (Target::Hop, hop.chat_url()),
        (Target::ExaiSqlite, v1_url(sqlite_port)),
        (Target::ExaiPostgres, v1_url(pg_port)),
        (Target::ExaiHit, v1_url(hit_port)),
    ]
    .into_iter()
    .collect();
    let post_for = |t: Target| Post {
        body: request_body(),
        token: matches!(
            t,
            Target::ExaiSqlite | Target::ExaiPostgres | Target::ExaiHit
        )
        .then(|| TOKEN.to_owned()),
    };
    let c1_targets = [
        Target::Direct,
        Target::Hop,
        Target::ExaiSqlite,
        Target::ExaiPostgres,
    ];
    let c32_targets = [
        Target::Direct,
        Target::Hop,
        Target::ExaiSqlite,
        Target::ExaiPostgres,
        Target::ExaiHit,
    ];
    let reps = if ctx.opts.quick { 1 } else { 3 };
    let secs = if ctx.opts.quick { 1 } else { 5 };
    let span = Duration::from_secs(secs);

    let wrk_run = |t: Target, conns: usize, d: Duration| {
        let (dir, url, p) = (dir.clone(), urls[&t].clone(), post_for(t));
        tokio::task::spawn_blocking(move || wrk::run(&dir, &url, &p, 1, conns, d))
    };
    if !ctx.opts.quick {
        for t in c32_targets {
            wrk_run(t, 4, Duration::from_secs(1)).await??;
        }
    }
    let pids: HashMap<Target, u32> = [
        (Target::Direct, upstream.pid()),
        (Target::Hop, hop.pid()),
        (Target::ExaiSqlite, Some(sqlite.pid())),
        (Target::ExaiPostgres, Some(pg.pid())),
        (Target::ExaiHit, Some(hit.pid())),
    ]
    .into_iter()
    .filter_map(|(t, pid)| Some((t, pid?)))
    .collect();
    let (mut cpu, mut cpu1): (HashMap<Target, Vec<f64>>, HashMap<Target, Vec<f64>>) =
        Default::default();
    let mut c1: HashMap<Target, Vec<WrkResult>> = HashMap::new();
    let mut c32: HashMap<Target, Vec<WrkResult>> = HashMap::new();
    for rep in 0..reps {
        let mut order1 = c1_targets.to_vec();
        let mut order32 = c32_targets.to_vec();
        if rep % 2 == 1 {
            order1.reverse();
            order32.reverse();
        }
        for (conns, order) in [(1, order1), (32, order32)] {
            let (runs, cpus) = if conns == 1 {
                (&mut c1, &mut cpu1)
            } else {
                (&mut c32, &mut cpu)
            };
            for t in order {
                eprintln!("[bench] nginx rep {rep}: {conns} conns {}", t.label());
                let before = pids.get(&t).map(|p| profile::tree_ticks(*p));
                let run = wrk_run(t, conns, span).await??;
                // The serving process's CPU per response over the run.
                if let (Some(before), Some(pid)) = (before, pids.get(&t)) {
                    let ticks = profile::tree_ticks(*pid).saturating_sub(before);
                    let us = ticks as f64 / profile::TICKS_PER_S * 1e6;
                    cpus.entry(t)
                        .or_default()
                        .push(us / run.requests.max(1) as f64);
                }
                runs.entry(t).or_default().push(run);
            }
        }
    }
    let mut figures = Figures {
        reps,
        secs,
        c1: c1_targets
            .iter()
            .map(|t| (*t, Median::of(&c1[t])))
            .collect(),
        c32: c32_targets
            .iter()
            .map(|t| (*t, Median::of(&c32[t])))
            .collect(),
        c1_cpu_us: c1_targets
            .iter()
            .filter_map(|t| Some((*t, median_f(cpu1.get(t)?.clone()))))
            .collect(),
        c32_cpu_us: c32_targets
            .iter()
            .filter_map(|t| Some((*t, median_f(cpu.get(t)?.clone()))))
            .collect(),
        profile: None,
        body_bytes: canned.len(),
        quick: ctx.opts.quick,
    };
    // The profile: the other exai instances are stopped so only the profiled one runs.
    pg.stop(Duration::from_secs(30))?;
    hit.stop(Duration::from_secs(30))?;
    let max = figures.c32(Target::ExaiSqlite).map_or(0.0, |m| m.rps);
    let rate = PROFILE_RATE
        .min((max * 0.8 / 500.0).floor() * 500.0)
        .max(500.0);
    let profiled = profile_run(ctx, &sqlite, sqlite_port, rate).await;
    figures.profile = Some(profiled?);
    sqlite.stop(Duration::from_secs(30))?;
    drop((hop, upstream));
    Ok(figures)
}

/// POSTs the benchmark's request once: (x-exai-cache, body).
async fn post(
    ctx: &Ctx,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(Option<String>, String)> {
    let mut req = ctx
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(request_body());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = r.status();
    let cache = r
        .headers()
        .get("x-exai-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.text().await?;
    anyhow::ensure!(status.is_success(), "POST {url}: {status}: {body}");
    Ok((cache, body))
}

/// Open loop at `rate` against exai while perf and /proc record its CPU.
async fn profile_run(
    ctx: &Ctx,
    exai: &crate::procs::Proc,
    port: u16,
    rate: f64,
) -> anyhow::Result<ProfileRun> {
    let secs: u64 = if ctx.opts.quick { 2 } else { 8 };
    let conns = 64;
    let pid = exai.pid();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let req = rawload::post_request(addr, "/v1/chat/completions", Some(TOKEN), &request_body());
    let perf_ok = profile::perf_usable();
    let hardware_counters = perf_ok.is_ok() && profile::hardware_counters();
    eprintln!("[bench] nginx: profile at {rate:.0} req/s for {secs} s");
    let load = tokio::spawn(rawload::open_loop(
        addr,
        req,
        rate,
        Duration::from_secs(secs + 2),
        conns,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = profile::task_times(pid);
    let started = Instant::now();
    let data = ctx.work.join("perf.data");
    let recorded = match &perf_ok {
        Ok(()) => {
            let data = data.clone();
            tokio::task::spawn_blocking(move || profile::record(pid, &data, secs)).await?
        }
        Err(e) => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Err(anyhow::anyhow!("{e}"))
        }
    };
    let window = started.elapsed().as_secs_f64();
    let after = profile::task_times(pid);
    let load = load.await?;
    let threads = profile::by_thread(&before, &after);
    let total: u64 = threads.iter().map(|(_, t)| *t).sum();
    let perf = match recorded {
        Ok(()) => {
            let data = data.clone();
            tokio::task::spawn_blocking(move || profile::samples(&data))
                .await?
                .map(|s| profile::summarise(&s, 15))
                .map_err(|e| format!("{e:#}"))
        }
        Err(e) => Err(format!("{e:#}")),
    };
    let _ = std::fs::remove_file(&data);
    let perf_command = format!(
        "perf {}",
        profile::record_args(0, std::path::Path::new("perf.data"), secs)
            .join(" ")
            .replace("-p 0", "-p <exai>")
    );
    Ok(ProfileRun {
        rate,
        achieved: load.throughput(),
        p50: load.us(0.5),
        p99: load.us(0.99),
        errors: load.errors,
        conns,
        secs,
        cores: total as f64 / profile::TICKS_PER_S / window.max(1e-9),
        threads: threads
            .into_iter()
            .map(|(n, t)| (n, t as f64 / total.max(1) as f64))
            .collect(),
        perf_command,
        perf,
        hardware_counters,
    })
}

/// Start of the scenario's section in the report (`--only nginx` replaces it in place).
pub const BEGIN: &str = "<!-- nginx:begin -->";
/// End of the section.
pub const END: &str = "<!-- nginx:end -->";

/// Which rows of the targets table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetGroup {
    /// Latency and throughput against nginx.
    Gateway,
    /// Persistence's share of CPU.
    Persistence,
}

/// The targets table's rows this scenario measures: (target, measured, met).
pub fn targets(f: Option<&Figures>, group: TargetGroup) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    if group == TargetGroup::Persistence {
        let share = f.and_then(Figures::persistence_share);
        let rate = f
            .and_then(|f| f.profile.as_ref())
            .map_or(0.0, |p| p.achieved);
        out.push((
            "persistence ≤ 10 % of exai's CPU at ~20k req/s (perf, §0)".to_owned(),
            share
                .map(|v| format!("{:.1} % at {rate:.0} req/s", v * 100.0))
                .unwrap_or_default(),
            share.map(|v| v <= 0.10),
        ));
        return out;
    }
    for (t, name) in [
        (Target::ExaiSqlite, "SQLite"),
        (Target::ExaiPostgres, "PostgreSQL"),
    ] {
        let c1 = f.and_then(|f| Some((f.added(t)?, f.c1(t)?, f.c1(Target::Direct)?)));
        out.push((
            format!(
                "added p50 ≤ 40 µs at concurrency 1 (/v1, cache off, {name}; vs nginx upstream direct)"
            ),
            c1.map(|(a, g, b)| format!("{} µs ({} vs {} µs)", a.0, g.p50, b.p50))
                .unwrap_or_default(),
            c1.map(|(a, _, _)| a.0 <= 40),
        ));
        out.push((
            format!("added p99 ≤ 250 µs at concurrency 1 (/v1, cache off, {name})"),
            c1.map(|(a, g, b)| format!("{} µs ({} vs {} µs)", a.1, g.p99, b.p99))
                .unwrap_or_default(),
            c1.map(|(a, _, _)| a.1 <= 250),
        ));
    }
    for (t, name) in [
        (Target::ExaiSqlite, "SQLite"),
        (Target::ExaiPostgres, "PostgreSQL"),
    ] {
        let r = f.and_then(|f| f.vs_hop(t));
        out.push((
            format!("/v1 req/s at 32 connections ≥ 50 % of the nginx proxy hop ({name})"),
            r.map(|r| format!("{:.0} %", r * 100.0)).unwrap_or_default(),
            r.map(|r| r >= 0.5),
        ));
    }
    let hit = f.and_then(|f| f.vs_hop(Target::ExaiHit));
    out.push((
        "cache-hit req/s at 32 connections ≥ 100 % of the nginx proxy hop".to_owned(),
        hit.map(|r| format!("{:.0} %", r * 100.0))
            .unwrap_or_default(),
        hit.map(|r| r >= 1.0),
    ));
    out
}

/// The report's section, between [`BEGIN`] and [`END`].
pub fn render(f: &Figures, command: &str, s: &mut String) {
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "## 0. Against nginx (wrk)\n\n\
         Measured by `{command}` on {}{}. nginx {} serves a canned chat completion ({} bytes, `POST /v1/chat/completions`) as the \
         upstream; a second nginx is a plain `proxy_pass` hop in front of it (keep-alive \
         connections to the upstream). exai runs `/v1` against the same upstream with the cache \
         off and persistence on (SQLite; PostgreSQL, its own database), and a third instance \
         with the cache on answers the same prompt from L1. wrk drives every row with one \
         thread and the same POST; after 1 s of warm-up each (not in quick mode), each of {} \
         repetitions measures every target for {} s in turn (the order reversed on odd repetitions) and the tables give medians. wrk, both \
         nginx and exai share the machine's cores.\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        if f.quick {
            " (quick mode: short runs, indicative only)"
        } else {
            ""
        },
        nginx_version(),
        f.body_bytes,
        f.reps,
        f.secs,
    );
    let _ = writeln!(
        s,
        "Concurrency 1 (CPU per response as in the 32-connection table below):\n\n\
         | target | p50 µs | p99 µs | added p50 / p99 µs (vs direct) | req/s | CPU µs per response | errors |\n\
         |---|---|---|---|---|---|---|"
    );
    for (t, m) in &f.c1 {
        let added = match (t, f.added(*t)) {
            (Target::Direct, _) | (_, None) => "—".to_owned(),
            (_, Some((a, b))) => format!("{a} / {b}"),
        };
        let cpu = f
            .c1_cpu(*t)
            .map(|us| format!("{us:.1}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {added} | {:.0} | {cpu} | {} |",
            t.label(),
            m.p50,
            m.p99,
            m.rps,
            m.errors
        );
    }
    let _ = writeln!(
        s,
        "\n32 connections (CPU per response: the serving process's own CPU time over the run, \
         from `/proc`, divided by its responses; for exai that excludes the upstream's):\n\n\
         | target | req/s (range) | ÷ nginx hop | p50 µs | p99 µs | CPU µs per response | errors |\n\
         |---|---|---|---|---|---|---|"
    );
    for (t, m) in &f.c32 {
        let ratio = f
            .vs_hop(*t)
            .map(|r| format!("{:.0} %", r * 100.0))
            .unwrap_or_default();
        let cpu = f
            .c32_cpu(*t)
            .map(|us| format!("{us:.1}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {:.0} ({:.0}–{:.0}) | {ratio} | {} | {} | {cpu} | {} |",
            t.label(),
            m.rps,
            m.rps_range.0,
            m.rps_range.1,
            m.p50,
            m.p99,
            m.errors
        );
    }
    s.push('\n');
    if let Some(p) = &f.profile {
        render_profile(p, s);
    }
    let _ = writeln!(s, "{END}\n");
}

fn render_profile(p: &ProfileRun, s: &mut String) {
    let _ = writeln!(
        s,
        "### Persistence share of exai's CPU\n\n\
         exai `/v1` (cache off, SQLite persistence, the nginx upstream) under an open-loop load \
         of {:.0} req/s ({} keep-alive connections, latency from each request's intended \
         start; the rate is {} req/s or 80 % of this instance's 32-connection figure above, \
         whichever is lower): achieved {:.0} req/s, p50 {} µs, p99 {} µs, {} errors. Over the \
         {} s profiled, exai used {:.2} cores.\n",
        p.rate, p.conns, PROFILE_RATE, p.achieved, p.p50, p.p99, p.errors, p.secs, p.cores
    );
    match &p.perf {
        Ok(prof) => {
            let _ = writeln!(
                s,
                "`{}` ({} samples; the `cpu-clock` software event{}). A sample is persistence \
                 when its thread is a SQLite worker or the innermost pipeline frame of its call \
                 chain is in `journal`, `metrics_buffer` (the flusher), `store`, sqlx or \
                 SQLite; \"events\" is the recorder and the live feed.\n\n\
                 | where | share of exai's samples |\n|---|---|",
                p.perf_command,
                prof.samples,
                if p.hardware_counters {
                    ""
                } else {
                    "; `perf stat -e instructions` reports hardware counters as not supported on this VM"
                }
            );
            for (b, share) in &prof.buckets {
                let name = match b {
                    Bucket::Persistence => "persistence (journal, flusher, store, SQL driver)",
                    Bucket::Events => "events (recorder, live feed)",
                    Bucket::Rest => "the rest of exai",
                };
                let _ = writeln!(s, "| {name} | {:.1} % |", share * 100.0);
            }
            let _ = writeln!(
                s,
                "\nWhere all of exai's samples go, by component (the first frame from the \
                 innermost out that names a component's crate or module decides; a sample in \
                 the kernel is the kernel's, whoever made the syscall):\n\n\
                 | component | share of exai's samples |\n|---|---|"
            );
            for (name, share) in &prof.components {
                let _ = writeln!(s, "| {name} | {:.1} % |", share * 100.0);
            }
            symbols(
                s,
                "Pipeline functions charged (the innermost pipeline frame of each sample, with \
                 what it called)",
                &prof.top_pipeline,
            );
            symbols(s, "Top symbols (self)", &prof.top_self);
            symbols(
                s,
                "Top symbols within persistence (self, of all samples)",
                &prof.top_persistence,
            );
            let _ = writeln!(
                s,
                "\nSamples by thread (perf):\n\n| thread | share |\n|---|---|"
            );
            for (t, share) in prof.threads.iter().take(10) {
                let _ = writeln!(s, "| `{t}` | {:.1} % |", share * 100.0);
            }
        }
        Err(why) => {
            let _ = writeln!(
                s,
                "perf could not profile here ({why}); per-thread CPU only."
            );
        }
    }
    let _ = writeln!(
        s,
        "\nCPU by thread from `/proc/<exai>/task/*/stat` over the same window (actix arbiters \
         all share one truncated name, so this view cannot tell the flusher's arbiter from the \
         others):\n\n| thread | share of exai's CPU |\n|---|---|"
    );
    for (t, share) in p.threads.iter().take(10) {
        let _ = writeln!(s, "| `{t}` | {:.1} % |", share * 100.0);
    }
    s.push('\n');
}

fn symbols(s: &mut String, title: &str, rows: &[(String, f64)]) {
    let _ = writeln!(s, "\n{title}:\n\n| symbol | share |\n|---|---|");
    for (sym, share) in rows {
        let sym = if sym.chars().count() > 110 {
            format!("{}…", sym.chars().take(110).collect::<String>())
        } else {
            sym.clone()
        };
        let _ = writeln!(
            s,
            "| `{}` | {:.1} % |",
            sym.replace('|', "\\|"),
            share * 100.0
        );
    }
}

/// `nginx -v`'s version, e.g. `1.22.1`.
fn nginx_version() -> String {
    std::process::Command::new(crate::nginx::NGINX)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .rsplit('/')
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
