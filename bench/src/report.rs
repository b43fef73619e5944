//! Renders `BENCHMARKS.md`: machine, command, date, one table per scenario, and the DESIGN §9
//! targets marked met or missed.

use std::fmt::Write as _;
use std::time::Duration;

use crate::ingest::Ingest;
use crate::loadgen::RunResult;
use crate::vs_nginx::{self, TargetGroup};

/// One latency comparison: a gateway run against the baseline run beside it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Storage backend of the exai instance.
    pub backend: String,
    /// Which surface.
    pub surface: String,
    /// Load shape.
    pub load: String,
    /// Baseline p50/p99, µs.
    pub base: (u64, u64),
    /// Gateway p50/p99, µs.
    pub gw: (u64, u64),
    /// Gateway throughput, req/s.
    pub rps: f64,
    /// Gateway failures.
    pub errors: u64,
}

impl Row {
    /// A row from a baseline and a gateway run.
    pub fn overhead(
        backend: &str,
        surface: &str,
        load: &str,
        base: &RunResult,
        gw: &RunResult,
    ) -> Row {
        Row {
            backend: backend.to_owned(),
            surface: surface.to_owned(),
            load: load.to_owned(),
            base: (base.us(0.5), base.us(0.99)),
            gw: (gw.us(0.5), gw.us(0.99)),
            rps: gw.throughput(),
            errors: gw.errors,
        }
    }

    fn added(&self) -> (i64, i64) {
        (
            self.gw.0 as i64 - self.base.0 as i64,
            self.gw.1 as i64 - self.base.1 as i64,
        )
    }
}

/// Scenario 4's figures.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Dashboard clients connected.
    pub clients: usize,
    /// Event deliveries per second across all clients.
    pub deliveries_per_s: f64,
    /// Event-to-client latency p50, µs (millisecond clock resolution).
    pub p50_us: u64,
    /// p99, µs.
    pub p99_us: u64,
    /// Deliveries measured.
    pub samples: u64,
    /// The gateway's latency during the fan-out against the baseline.
    pub gateway: Row,
    /// CPU in cores over the loaded window: exai, and this process (the readers and the
    /// load generator), from `/proc`; the machine's cores for scale.
    pub cores: (f64, f64, usize),
}

/// Scenarios 5 and 6.
#[derive(Debug, Clone)]
pub struct Steady {
    /// `soak` or `outage`.
    pub label: String,
    /// Length of the run.
    pub minutes: f64,
    /// Outage length, if any.
    pub outage_s: Option<u64>,
    /// Requests that succeeded.
    pub requests_ok: u64,
    /// Requests that failed.
    pub requests_failed: u64,
    /// RSS after start-up, KiB.
    pub rss_start_kib: u64,
    /// RSS half-way through the load, KiB.
    pub rss_mid_kib: u64,
    /// RSS at the end, KiB.
    pub rss_end_kib: u64,
    /// The L1 cache TTL the run used (every prompt is unique, so the cache fills for this long).
    pub cache_ttl_s: u64,
    /// Peak RSS, KiB.
    pub rss_peak_kib: u64,
    /// Peak size of the data directory (journal), bytes.
    pub journal_peak_bytes: u64,
    /// Time from the end of load until nothing was buffered or spilled.
    pub drain_s: f64,
    /// Time from the store's return until the journal was empty (outage runs).
    pub journal_drain_s: Option<f64>,
    /// Events recorded by exai.
    pub produced: u64,
    /// Events in PostgreSQL before shutdown.
    pub persisted: u64,
    /// Events in PostgreSQL after a graceful shutdown.
    pub persisted_after_stop: u64,
}

/// Everything measured in one run.
pub struct Report {
    /// Quick mode.
    quick: bool,
    /// The command line to print.
    command: String,
    /// Scenario 0: beside nginx.
    pub nginx: Option<vs_nginx::Figures>,
    /// Scenario 1.
    pub overhead: Vec<Row>,
    /// Max throughput at 32 connections: backend, baseline rps, /v1 rps, /v1 errors.
    pub throughput: Vec<(String, f64, f64, u64)>,
    /// Scenario 2.
    pub cache: Vec<Row>,
    /// Scenario 3.
    pub ingest: Ingest,
    /// Scenario 4.
    pub fanout: Option<Fanout>,
    /// Scenarios 5 and 6.
    pub steady: Vec<Steady>,
    /// Wall time.
    pub total: Duration,
    /// Scenarios that failed, with why.
    pub failures: Vec<(String, String)>,
}

impl Report {
    /// An empty report.
    pub fn new(quick: bool, command: &str) -> Report {
        Report {
            quick,
            command: command.to_owned(),
            nginx: None,
            overhead: Vec::new(),
            throughput: Vec::new(),
            cache: Vec::new(),
            ingest: Ingest::default(),
            fanout: None,
            steady: Vec::new(),
            total: Duration::ZERO,
            failures: Vec::new(),
        }
    }

    /// Records a scenario's failure, if it failed.
    pub fn note(&mut self, scenario: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            eprintln!("[bench] {scenario} failed: {e:#}");
            self.failures.push((scenario.to_owned(), format!("{e:#}")));
        }
    }

    /// When this run's soak lasted at least [`LONG_SOAK_MINUTES`], the text to write to
    /// [`LONG_SOAK_FILE`]: a marker line the full report reads its verdict from, then the
    /// soak's table.
    pub fn long_soak(&self) -> Option<String> {
        let soak = self
            .steady
            .iter()
            .find(|r| r.label == "soak" && r.minutes >= LONG_SOAK_MINUTES)?;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<!-- exai long soak: growth={:.3} minutes={:.1} lost={} -->",
            second_half_growth(soak),
            soak.minutes,
            soak.produced as i64 - soak.persisted as i64
        );
        let _ = writeln!(
            s,
            "Generated by `{}` on {} in {:.0} s. {}\n",
            self.command,
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            self.total.as_secs_f64(),
            machine()
        );
        s.push_str(&steady_table(std::slice::from_ref(soak)));
        let _ = writeln!(
            s,
            "\nRSS growth over the second half: {:.2}× ({:.1} → {:.1} MiB); flat means ≤ 1.10×.",
            second_half_growth(soak),
            soak.rss_mid_kib as f64 / 1024.0,
            soak.rss_end_kib as f64 / 1024.0
        );
        Some(s)
    }

    /// The markdown text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# exai benchmarks\n");
        let _ = writeln!(
            s,
            "Generated by `{}`{} on {} in {:.0} s. Every figure comes from the run that wrote this file; \
             gateway figures sit beside a baseline (nginx's canned upstream, or the in-repo mock \
             upstream, called directly) measured in the same run, on the same machine, with the same \
             client.\n",
            self.command,
            if self.quick {
                " (quick mode: short runs, indicative only)"
            } else {
                ""
            },
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            self.total.as_secs_f64()
        );
        let _ = writeln!(s, "## Machine\n\n{}\n", machine());
        let _ = writeln!(
            s,
            "Load generators: section 0 uses wrk (closed loop, one thread) and, for the profile, a \
             light open-loop HTTP/1.1 generator in the harness; the other sections use the harness's \
             reqwest generator: open loop with intended-start timing on a 1 ms schedule (coordinated \
             omission is charged to the server), HDR histograms; closed loop for concurrency 1 and the \
             32-connection throughput run. Load generator, upstream and exai share the machine's \
             cores, so absolute numbers include that contention.\n"
        );
        self.targets(&mut s);
        if !self.failures.is_empty() {
            let _ = writeln!(s, "## Scenarios that failed in this run\n");
            for (name, why) in &self.failures {
                let _ = writeln!(s, "- **{name}**: {why}");
            }
            s.push('\n');
        }
        if let Some(f) = &self.nginx {
            vs_nginx::render(f, &self.command, &mut s);
        }
        if !self.overhead.is_empty() {
            let _ = writeln!(
                s,
                "## 1. Gateway overhead (in-repo mock upstream)\n\nEvents persisted to the backend named \
                 in each row; the cache is on, and every prompt is new on both surfaces (a per-process \
                 counter), so each request is a cache miss. \"(miss)\" is checked: the mock's request \
                 counter rose by at least the surface's successful calls during its run.\n"
            );
            table(&mut s, &self.overhead);
            let _ = writeln!(
                s,
                "\n| backend | baseline req/s (32 conns) | /v1 req/s (32 conns) | /v1 errors |\n|---|---|---|---|"
            );
            for (b, base, v1, e) in &self.throughput {
                let _ = writeln!(s, "| {b} | {base:.0} | {v1:.0} | {e} |");
            }
            s.push('\n');
        }
        if !self.cache.is_empty() {
            let _ = writeln!(
                s,
                "## 2. Cache hit path\n\nBaseline: the mock upstream answering directly (a miss path).\n"
            );
            table(&mut s, &self.cache);
            s.push('\n');
        }
        if !self.ingest.rows.is_empty() {
            let _ = writeln!(
                s,
                "## 3. Event ingest\n\nThe events are `request` events shaped like a real `/v1` call's. Every \
                 store batch is one transaction, committed (the flusher confirms it to the journal \
                 only then); the PostgreSQL ceiling is one binary `COPY` of all the rows, one \
                 transaction.\n\n\
                 | backend | batch | store events/s | raw ceiling events/s | ratio | ceiling method |\n\
                 |---|---|---|---|---|---|"
            );
            for r in &self.ingest.rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.0} | {:.2} | {} |",
                    r.backend,
                    r.batch,
                    r.store_eps,
                    r.raw_eps,
                    r.store_eps / r.raw_eps.max(1.0),
                    r.raw_method
                );
            }
            let _ = writeln!(
                s,
                "\nFlush latency (batch of 50, `insert_batch` incl. rollups):\n\n| backend | existing rows | p50 µs | p99 µs |\n|---|---|---|---|"
            );
            for f in &self.ingest.flush {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    f.backend, f.existing_rows, f.p50_us, f.p99_us
                );
            }
            s.push('\n');
        }
        if let Some(f) = &self.fanout {
            let _ = writeln!(
                s,
                "## 4. Dashboard fan-out\n\n| clients | events/s per client | deliveries/s | event→client p50 | p99 | samples |\n|---|---|---|---|---|---|\n| {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {} |\n\nGateway during the fan-out:\n",
                f.clients,
                f.deliveries_per_s / f.clients.max(1) as f64,
                f.deliveries_per_s,
                f.p50_us as f64 / 1000.0,
                f.p99_us as f64 / 1000.0,
                f.samples
            );
            table(&mut s, std::slice::from_ref(&f.gateway));
            let _ = writeln!(
                s,
                "\nCPU over the loaded window (from `/proc`): exai {:.2} cores, the benchmark \
                 process ({} readers and the load generator) {:.2} cores, of {} on the machine.",
                f.cores.0, f.clients, f.cores.1, f.cores.2
            );
            s.push('\n');
        }
        if !self.steady.is_empty() {
            let _ = writeln!(
                s,
                "## 5–6. Soak and outage (PostgreSQL, 100 req/s through /v1)\n"
            );
            s.push_str(&steady_table(&self.steady));
            s.push('\n');
        }
        if self.long_soak().is_none()
            && let Ok(long) = std::fs::read_to_string(LONG_SOAK_FILE)
        {
            let _ = writeln!(
                s,
                "## 5b. The 30-minute soak (separate run, `{LONG_SOAK_FILE}`)\n\n\
                 The full run keeps its soak short so that it finishes in about 20 minutes. \
                 DESIGN's 30-minute soak is `scripts/bench --only soak --soak-minutes 30`, which \
                 rewrites `{LONG_SOAK_FILE}`; its latest result is copied here as it was written:\n"
            );
            s.push_str(long.trim_start_matches(|c| c != '\n').trim_start());
            s.push('\n');
        }
        if let Ok(notes) = std::fs::read_to_string("bench/NOTES.md") {
            s.push_str(&notes);
        }
        s
    }

    fn targets(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{TARGETS_HEADING}\n\n| target | measured | met |\n|---|---|---|"
        );
        let mut line = |t: &str, m: String, ok: Option<bool>| {
            let _ = writeln!(s, "{}", target_line(t, &m, ok));
        };
        let nginx = self.nginx.as_ref();
        for (t, m, ok) in vs_nginx::targets(nginx, TargetGroup::Gateway) {
            line(&t, m, ok);
        }
        let pg = self
            .ingest
            .rows
            .iter()
            .filter(|r| r.backend == "postgres")
            .map(|r| (r.batch, r.store_eps / r.raw_eps.max(1.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        line(
            "PostgreSQL ingest ≥ 80 % of bare binary COPY (same run, best batch size)",
            pg.map(|(batch, r)| format!("{:.0} % (batch {batch})", r * 100.0))
                .unwrap_or_default(),
            pg.map(|(_, r)| r >= 0.8),
        );
        let pgf: Vec<_> = self
            .ingest
            .flush
            .iter()
            .filter(|f| f.backend == "postgres")
            .collect();
        if let [small, big] = pgf.as_slice() {
            let ratio = big.p99_us as f64 / small.p99_us.max(1) as f64;
            line(
                "flush cost flat from 10k to 10M rows (PostgreSQL p99 ratio)",
                format!(
                    "{} → {} µs ({ratio:.2}×, {} rows)",
                    small.p99_us, big.p99_us, big.existing_rows
                ),
                Some(ratio <= 2.0),
            );
        } else {
            line("flush cost flat from 10k to 10M rows", String::new(), None);
        }
        for (t, m, ok) in vs_nginx::targets(nginx, TargetGroup::Persistence) {
            line(&t, m, ok);
        }
        let f = self.fanout.as_ref();
        line(
            "dashboard fan-out p99 ≤ 50 ms (1,000 clients)",
            f.map(|f| format!("{:.1} ms ({} clients)", f.p99_us as f64 / 1000.0, f.clients))
                .unwrap_or_default(),
            f.and_then(|f| (f.clients >= 1000).then_some(f.p99_us <= 50_000)),
        );
        for r in &self.steady {
            let lost = r.produced as i64 - r.persisted as i64;
            line(
                &format!("zero events lost ({})", r.label),
                format!("{lost} lost of {}", r.produced),
                Some(lost == 0),
            );
        }
        if let Some(soak) = self.steady.iter().find(|r| r.label == "soak") {
            // Flat: the second half (the cache at its steady state) grows RSS by ≤ 10 %.
            let growth = second_half_growth(soak);
            line(
                "memory flat over the soak (RSS end ÷ mid-run ≤ 1.10)",
                format!(
                    "{:.2}× ({:.1} → {:.1} MiB) over the second half of {:.1} min",
                    growth,
                    soak.rss_mid_kib as f64 / 1024.0,
                    soak.rss_end_kib as f64 / 1024.0,
                    soak.minutes
                ),
                Some(growth <= 1.10),
            );
        }
        if self.long_soak().is_none()
            && let Some((growth, minutes, lost)) = std::fs::read_to_string(LONG_SOAK_FILE)
                .ok()
                .as_deref()
                .and_then(parse_long_soak)
        {
            line(
                &format!("memory flat over a {minutes:.0}-minute soak (separate run, §5b)"),
                format!("{growth:.2}× RSS over the second half, {lost} events lost"),
                Some(growth <= 1.10 && lost == 0 && minutes >= LONG_SOAK_MINUTES),
            );
        }
        s.push('\n');
    }
}

/// One row of the targets table.
pub fn target_line(target: &str, measured: &str, ok: Option<bool>) -> String {
    let verdict = match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "not measured",
    };
    format!("| {target} | {measured} | {verdict} |")
}

/// `doc` (a full report) with the nginx scenario's section and its rows of the targets table
/// replaced by this run's (`--only nginx`). A report without them gets the section before its
/// first numbered section and the rows at the end of its targets table; `None` when `doc` is
/// not a report (no targets table).
pub fn splice_nginx(doc: &str, f: &vs_nginx::Figures, command: &str) -> Option<String> {
    let table = doc.find(TARGETS_HEADING)?;
    let mut section = String::new();
    vs_nginx::render(f, command, &mut section);
    let section = section.trim_end();
    let mut out = match marked(doc, vs_nginx::BEGIN, vs_nginx::END) {
        Some(old) => doc.replacen(old, section, 1),
        None => {
            let at = doc[table..]
                .find("\n## ")
                .map_or(doc.len(), |t| table + t + 1);
            format!("{}{section}\n\n{}", &doc[..at], &doc[at..])
        }
    };
    for group in [TargetGroup::Gateway, TargetGroup::Persistence] {
        for (t, m, ok) in vs_nginx::targets(Some(f), group) {
            let prefix = format!("| {t} |");
            let new = target_line(&t, &m, ok);
            if let Some(old) = out.lines().find(|l| l.starts_with(&prefix)) {
                out = out.replacen(old, &new, 1);
            } else if let Some(at) = out.find(TARGETS_HEADING) {
                // After the table's last row.
                let rows = out[at..].find("|---|").map_or(at, |r| at + r);
                let end = out[rows..].find("\n\n").map_or(out.len(), |e| rows + e);
                out.insert_str(end, &format!("\n{new}"));
            }
        }
    }
    Some(out)
}

/// The targets table's heading.
const TARGETS_HEADING: &str = "## DESIGN §9 targets";

/// The text from `begin` to `end` (both included), if `doc` has it.
fn marked<'a>(doc: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let at = doc.find(begin)?;
    let to = doc[at..].find(end)? + at + end.len();
    Some(&doc[at..to])
}

/// Where a 30-minute soak (`--soak-minutes 30` or more) writes its own result, so that the
/// 20-minute full run can show the latest one.
pub const LONG_SOAK_FILE: &str = "bench/SOAK-30MIN.md";
/// Soaks at least this long are written to [`LONG_SOAK_FILE`].
pub const LONG_SOAK_MINUTES: f64 = 30.0;

/// Reads the marker line of [`LONG_SOAK_FILE`]: (growth, minutes, events lost).
fn parse_long_soak(text: &str) -> Option<(f64, f64, i64)> {
    let marker = text
        .lines()
        .next()?
        .strip_prefix("<!-- exai long soak:")?
        .strip_suffix("-->")?;
    let field = |name: &str| {
        marker
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    Some((
        field("growth")?.parse().ok()?,
        field("minutes")?.parse().ok()?,
        field("lost")?.parse().ok()?,
    ))
}

/// Second-half RSS growth of a soak: RSS at the end over RSS half-way through the load.
pub fn second_half_growth(r: &Steady) -> f64 {
    r.rss_end_kib as f64 / r.rss_mid_kib.max(1) as f64
}

/// The soak/outage table.
fn steady_table(steady: &[Steady]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Every request has a unique prompt, so the L1 cache fills until its entries expire; each run sets the cache TTL to at most a quarter of its length, so the second half shows the steady state (\"mid\" is RSS half-way through the load).\n\n| run | minutes | cache TTL s | outage s | requests ok/failed | RSS start → mid → end (peak) MiB | journal peak MiB | journal drained s after restore | drain s (from end of load) | events produced | persisted | after shutdown | lost |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in steady {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {}/{} | {:.1} → {:.1} → {:.1} ({:.1}) | {:.2} | {} | {:.1} | {} | {} | {} | {} |",
            r.label,
            r.minutes,
            r.cache_ttl_s,
            r.outage_s
                .map(|o| o.to_string())
                .unwrap_or_else(|| "—".into()),
            r.requests_ok,
            r.requests_failed,
            r.rss_start_kib as f64 / 1024.0,
            r.rss_mid_kib as f64 / 1024.0,
            r.rss_end_kib as f64 / 1024.0,
            r.rss_peak_kib as f64 / 1024.0,
            r.journal_peak_bytes as f64 / 1048576.0,
            r.journal_drain_s
                .map(|d| format!("{d:.1}"))
                .unwrap_or_else(|| "—".into()),
            r.drain_s,
            r.produced,
            r.persisted,
            r.persisted_after_stop,
            r.produced as i64 - r.persisted as i64
        );
    }
    s
}

fn table(s: &mut String, rows: &[Row]) {
    let _ = writeln!(
        s,
        "| backend | surface | load | baseline p50/p99 µs | gateway p50/p99 µs | added p50/p99 µs | gateway req/s | errors |\n|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let (a50, a99) = r.added();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {} | {} / {} | {} / {} | {:.0} | {} |",
            r.backend,
            r.surface,
            r.load,
            r.base.0,
            r.base.1,
            r.gw.0,
            r.gw.1,
            a50,
            a99,
            r.rps,
            r.errors
        );
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem} RAM, Linux {}, release build.",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn soak(minutes: f64, mid: u64, end: u64, produced: u64, persisted: u64) -> Steady {
        Steady {
            label: "soak".into(),
            minutes,
            outage_s: None,
            requests_ok: 1,
            requests_failed: 0,
            rss_start_kib: 40 * 1024,
            rss_mid_kib: mid,
            rss_end_kib: end,
            cache_ttl_s: 450,
            rss_peak_kib: end,
            journal_peak_bytes: 0,
            drain_s: 0.1,
            journal_drain_s: None,
            produced,
            persisted,
            persisted_after_stop: persisted,
        }
    }

    fn nginx_figures(exai_p50: u64) -> vs_nginx::Figures {
        use vs_nginx::{Median, Target};
        let m = |p50, rps| Median {
            p50,
            p99: p50 * 3,
            rps,
            rps_range: (rps, rps),
            errors: 0,
        };
        vs_nginx::Figures {
            reps: 1,
            secs: 2,
            c1: vec![
                (Target::Direct, m(60, 15000.0)),
                (Target::Hop, m(70, 13000.0)),
                (Target::ExaiSqlite, m(exai_p50, 4000.0)),
                (Target::ExaiPostgres, m(exai_p50 + 10, 3800.0)),
            ],
            c32: vec![
                (Target::Hop, m(400, 60000.0)),
                (Target::ExaiSqlite, m(1000, 24000.0)),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_lone_nginx_run_replaces_its_section_and_target_rows_only() {
        let mut full = Report::new(false, "scripts/bench");
        full.nginx = Some(nginx_figures(160));
        full.steady.push(soak(5.0, 100 * 1024, 104 * 1024, 10, 10));
        let doc = full.render();
        assert!(doc.contains("| 100 µs (160 vs 60 µs) | **no** |"), "{doc}");
        assert!(doc.contains("| 40 % | **no** |"));

        let again = splice_nginx(&doc, &nginx_figures(90), "scripts/bench --only nginx").unwrap();
        assert!(again.contains("| 30 µs (90 vs 60 µs) | yes |"), "{again}");
        assert!(!again.contains("160 vs 60"));
        assert!(again.contains("Measured by `scripts/bench --only nginx`"));
        assert_eq!(again.matches(vs_nginx::BEGIN).count(), 1);
        // Everything outside the section and the target rows is as it was.
        assert!(again.contains("zero events lost (soak)"));
        assert!(again.starts_with("# exai benchmarks\n\nGenerated by `scripts/bench` on"));
        assert!(splice_nginx("# no section here\n", &nginx_figures(90), "x").is_none());

        // A report from before the scenario existed gets the section and the rows.
        let old = "# exai benchmarks\n\n## DESIGN §9 targets\n\n| target | measured | met |\n|---|---|---|\n\
                   | old target | 1 | yes |\n\n## 1. Gateway overhead\n\nrows\n";
        let first = splice_nginx(old, &nginx_figures(90), "x").unwrap();
        let (section, rows, one) = (
            first.find(vs_nginx::BEGIN).unwrap(),
            first.find("| 30 µs (90 vs 60 µs) | yes |").unwrap(),
            first.find("## 1. Gateway").unwrap(),
        );
        assert!(
            first.find("| old target |").unwrap() < rows && rows < section && section < one,
            "{first}"
        );
        assert!(
            first.contains("| old target | 1 | yes |\n| added p50"),
            "{first}"
        );
    }

    #[test]
    fn a_long_soak_writes_a_marker_the_full_report_reads_back() {
        let mut long = Report::new(false, "scripts/bench --only soak --soak-minutes 30");
        long.steady
            .push(soak(30.0, 100 * 1024, 104 * 1024, 500, 498));
        let text = long.long_soak().unwrap();
        let (growth, minutes, lost) = parse_long_soak(&text).unwrap();
        assert!((growth - 1.04).abs() < 0.001, "{growth}");
        assert_eq!((minutes, lost), (30.0, 2));

        let mut short = Report::new(false, "scripts/bench");
        short.steady.push(soak(5.0, 100 * 1024, 104 * 1024, 10, 10));
        assert!(
            short.long_soak().is_none(),
            "a 5-minute soak is not the long one"
        );
        assert!(parse_long_soak("# not a marker\n").is_none());
    }
}
