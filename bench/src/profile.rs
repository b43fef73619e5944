//! Where exai's CPU goes under load: per-thread CPU from `/proc/<pid>/task/*/stat`, and a
//! `perf record` profile (Debian's linux-perf) whose samples are attributed to the event
//! pipeline's persistence (journal, flusher, store, SQLite/PostgreSQL driver), the rest of
//! the event pipeline (recorder, live feed), or the rest of exai.
//!
//! A sample counts as persistence when its thread is a SQLite worker, or when the innermost
//! frame of its call chain that names one of the pipeline's modules is a persistence module
//! (so `malloc` called from the journal's append counts as the journal's).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Where the Debian package installs perf.
pub const PERF: &str = "/usr/bin/perf";

/// Per-thread CPU time of a process, by thread id: (comm, clock ticks user+system).
pub type TaskTimes = HashMap<u32, (String, u64)>;

/// Reads every thread's name and CPU ticks.
pub fn task_times(pid: u32) -> TaskTimes {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
            && let Some(t) = parse_stat(&stat)
        {
            out.insert(tid, t);
        }
    }
    out
}

/// CPU ticks (user + system) used so far by `pid` and its children (nginx's workers): the
/// whole process tree one level down, read from `/proc`.
pub fn tree_ticks(pid: u32) -> u64 {
    let own = process_ticks(pid);
    let mut children = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.filter_map(Result::ok) {
            if let Ok(list) = std::fs::read_to_string(e.path().join("children")) {
                children.extend(
                    list.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    own + children.into_iter().map(process_ticks).sum::<u64>()
}

/// CPU ticks (user + system) used so far by `pid`'s own threads.
pub fn process_ticks(pid: u32) -> u64 {
    task_times(pid).values().map(|(_, t)| t).sum()
}

/// (comm, utime + stime) from a `/proc/.../stat` line; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // Fields after the comm start at field 3 (state); utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks per thread name between two snapshots, largest first.
pub fn by_thread(before: &TaskTimes, after: &TaskTimes) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, u64> = HashMap::new();
    for (tid, (comm, ticks)) in after {
        let was = before.get(tid).map_or(0, |(_, t)| *t);
        *sums.entry(thread_group(comm)).or_default() += ticks.saturating_sub(was);
    }
    let mut v: Vec<_> = sums.into_iter().filter(|(_, t)| *t > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Thread names with their trailing number folded (`sqlx-sqlite-worker-3` → `…-N`).
fn thread_group(comm: &str) -> String {
    let trimmed = comm.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < comm.len() {
        format!("{trimmed}N")
    } else {
        comm.to_owned()
    }
}

/// Where a sample's time is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Journal, flusher (metrics buffer), store, SQL driver and SQLite.
    Persistence,
    /// Recording and the live feed.
    Events,
    /// Everything else.
    Rest,
}

/// Frames (demangled symbol prefixes or substrings) that place a sample in a bucket. The
/// `exai_actors::journal::`-style paths are the ones before the `pipeline/` layout.
const PERSISTENCE: &[&str] = &[
    "exai_actors::pipeline::journal::",
    "exai_actors::pipeline::flusher::",
    "exai_actors::pipeline::store::",
    "exai_actors::journal::",
    "exai_actors::metrics_buffer::",
    "exai_actors::store::",
    "sqlx_sqlite::",
    "sqlx_postgres::",
    "sqlx_core::",
    "rusqlite::",
    "libsqlite3_sys::",
    "sqlite3",
];
const EVENTS: &[&str] = &[
    "exai_actors::pipeline::event::",
    "exai_actors::pipeline::recorder::",
    "exai_actors::event::",
    "exai_actors::dashboard::",
];
/// Threads (name prefixes) whose every sample is persistence: sqlx's SQLite connection
/// workers (`sqlx-sqlite-worker-N`) and the SQLite store's writer thread.
const PERSISTENCE_THREADS: &[&str] = &["sqlx-sqlite", "exai-sqlite-wr"];

/// The bucket of one frame's symbol, if it names one.
fn frame_bucket(sym: &str) -> Option<Bucket> {
    let sym = sym.trim_start_matches('<');
    if PERSISTENCE.iter().any(|p| sym.starts_with(p)) {
        Some(Bucket::Persistence)
    } else if EVENTS.iter().any(|p| sym.starts_with(p)) {
        Some(Bucket::Events)
    } else {
        None
    }
}

/// One parsed `perf script` sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Thread name.
    pub comm: String,
    /// Frames, innermost first (symbol names).
    pub frames: Vec<String>,
    /// Whether the innermost frame is in the kernel.
    pub in_kernel: bool,
}

/// Which part of exai a sample's CPU belongs to, for the component table: the first frame,
/// from the innermost out, that names one of these crates or modules decides. A sample whose
/// innermost frame is in the kernel is the kernel's (syscalls, scheduling), whoever called.
const COMPONENTS: &[(&str, &[&str])] = &[
    (
        "event pipeline (recorder, journal, flusher, store, live feed)",
        &[
            "exai_actors::pipeline::",
            "exai_actors::dashboard::",
            // The paths before the `pipeline/` layout.
            "exai_actors::journal::",
            "exai_actors::store::",
            "exai_actors::event::",
            "sqlx",
            "sqlite3",
            "rusqlite::",
            "libsqlite3_sys::",
        ],
    ),
    (
        "JSON (serde_json)",
        &["serde_json::", "serde_core::", "serde::"],
    ),
    (
        "upstream HTTP client (reqwest, hyper)",
        &[
            "reqwest::",
            "hyper::",
            "hyper_util::",
            "tower::",
            "tower_http::",
            "http::",
        ],
    ),
    (
        "HTTP server (actix-web)",
        &[
            "actix_http::",
            "actix_web::",
            "actix_server::",
            "actix_router::",
            "actix_service::",
        ],
    ),
    (
        "tracing",
        &["tracing", "tracing_core::", "tracing_subscriber::"],
    ),
    (
        "Prometheus metrics",
        &["prometheus_client::", "exai::prometheus::"],
    ),
    (
        "exai's own code (handlers, dispatch, cache, providers)",
        &["exai::", "exai_actors::"],
    ),
    (
        "async runtime (tokio, actix)",
        &["tokio::", "mio::", "actix::", "actix_rt::"],
    ),
];

/// The component of one sample (see [`COMPONENTS`]).
fn component(sample: &Sample) -> &'static str {
    if sample.in_kernel {
        return "kernel (syscalls, scheduling)";
    }
    if sample.persistence_thread() {
        return COMPONENTS[0].0;
    }
    for frame in &sample.frames {
        let sym = frame.trim_start_matches(['<', '&']);
        if let Some((name, _)) = COMPONENTS
            .iter()
            .find(|(_, prefixes)| prefixes.iter().any(|p| sym.starts_with(p)))
        {
            return name;
        }
    }
    match sample.frames.first().map(String::as_str) {
        Some(leaf)
            if ["mi_", "_mi_", "malloc", "free", "_int_", "__rust_"]
                .iter()
                .any(|p| leaf.starts_with(p)) =>
        {
            "allocator, not attributed"
        }
        _ => "other (libc, std, unknown frames)",
    }
}

impl Sample {
    /// Where it is charged, and the frame (or thread) that decided it.
    fn charged(&self) -> (Bucket, Option<&str>) {
        if let Some((b, f)) = self
            .frames
            .iter()
            .find_map(|f| frame_bucket(f).map(|b| (b, f.as_str())))
        {
            if self.persistence_thread() {
                return (Bucket::Persistence, Some(f));
            }
            return (b, Some(f));
        }
        if self.persistence_thread() {
            return (Bucket::Persistence, None);
        }
        (Bucket::Rest, None)
    }

    /// Whether the sample's thread does nothing but persistence.
    fn persistence_thread(&self) -> bool {
        PERSISTENCE_THREADS.iter().any(|p| self.comm.starts_with(p))
    }
}

/// Parses `perf script -F comm,tid,ip,sym,dso` output: a header line per sample, then one
/// indented `ip symbol` line per frame, innermost first, then a blank line.
pub fn parse_script(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut cur: Option<Sample> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if let Some(s) = cur.take() {
                out.push(s);
            }
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(s) = cur.as_mut() {
                let mut parts = line.trim().splitn(2, char::is_whitespace);
                let _ip = parts.next();
                let sym = parts.next().unwrap_or("[unknown]").trim();
                if s.frames.is_empty() {
                    s.in_kernel = sym.ends_with("([kernel.kallsyms])");
                }
                // `sym+0x1f (dso)` → `sym`
                let sym = sym.split(" (").next().unwrap_or(sym);
                let sym = match sym.rfind("+0x") {
                    Some(at) => &sym[..at],
                    None => sym,
                };
                s.frames.push(sym.to_owned());
            }
        } else {
            if let Some(s) = cur.take() {
                out.push(s);
            }
            // "comm  tid" — comm may hold spaces; the tid is the last field.
            let comm = line
                .trim_end()
                .rsplit_once(char::is_whitespace)
                .map_or(line, |(c, _)| c)
                .trim()
                .to_owned();
            cur = Some(Sample {
                comm,
                frames: Vec::new(),
                in_kernel: false,
            });
        }
    }
    if let Some(s) = cur {
        out.push(s);
    }
    out
}

/// The profile's figures.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Samples in exai.
    pub samples: usize,
    /// Share of samples per bucket.
    pub buckets: Vec<(Bucket, f64)>,
    /// Share of samples per thread name (folded), largest first.
    pub threads: Vec<(String, f64)>,
    /// Self share of the top symbols, largest first.
    pub top_self: Vec<(String, f64)>,
    /// Self share of the top symbols within persistence (of all samples).
    pub top_persistence: Vec<(String, f64)>,
    /// Share of the pipeline functions that charged samples to persistence or events (the
    /// innermost pipeline frame; inclusive of what it called), largest first.
    pub top_pipeline: Vec<(String, f64)>,
    /// Share of samples per component ([`COMPONENTS`]), largest first.
    pub components: Vec<(String, f64)>,
}

/// Summarises parsed samples.
pub fn summarise(samples: &[Sample], top: usize) -> Profile {
    let n = samples.len().max(1) as f64;
    let mut buckets: HashMap<Bucket, usize> = HashMap::new();
    let mut threads: HashMap<String, usize> = HashMap::new();
    let mut selfs: HashMap<&str, usize> = HashMap::new();
    let mut pers: HashMap<&str, usize> = HashMap::new();
    let mut pipeline: HashMap<&str, usize> = HashMap::new();
    let mut components: HashMap<&str, usize> = HashMap::new();
    for s in samples {
        *components.entry(component(s)).or_default() += 1;
        let (b, by) = s.charged();
        if b != Bucket::Rest {
            let by = by.unwrap_or("(SQLite worker thread, no pipeline frame)");
            *pipeline.entry(by).or_default() += 1;
        }
        *buckets.entry(b).or_default() += 1;
        *threads.entry(thread_group(&s.comm)).or_default() += 1;
        let leaf = s.frames.first().map_or("[unknown]", String::as_str);
        *selfs.entry(leaf).or_default() += 1;
        if b == Bucket::Persistence {
            *pers.entry(leaf).or_default() += 1;
        }
    }
    let share = |m: HashMap<&str, usize>| {
        let mut v: Vec<(String, f64)> = m
            .into_iter()
            .map(|(k, c)| (k.to_owned(), c as f64 / n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(top);
        v
    };
    let mut b: Vec<(Bucket, f64)> = [Bucket::Persistence, Bucket::Events, Bucket::Rest]
        .into_iter()
        .map(|k| (k, buckets.get(&k).copied().unwrap_or(0) as f64 / n))
        .collect();
    b.sort_by_key(|(k, _)| *k);
    let mut t: Vec<(String, f64)> = threads
        .into_iter()
        .map(|(k, c)| (k, c as f64 / n))
        .collect();
    t.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Profile {
        samples: samples.len(),
        buckets: b,
        threads: t,
        top_self: share(selfs),
        top_persistence: share(pers),
        top_pipeline: share(pipeline),
        components: share(components),
    }
}

/// The `perf record` arguments used (for the report too).
pub fn record_args(pid: u32, out: &Path, secs: u64) -> Vec<String> {
    [
        "record",
        "--no-buildid-cache",
        "-e",
        "cpu-clock",
        "-F",
        "499",
        "--call-graph",
        "dwarf,16384",
        "-p",
        &pid.to_string(),
        "-o",
        &out.display().to_string(),
        "--",
        "sleep",
        &secs.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Checks that perf can sample here (`cpu-clock` is a software event; VMs often lack the
/// hardware counters, which `perf stat -e instructions` shows).
pub fn perf_usable() -> anyhow::Result<()> {
    if !Path::new(PERF).exists() {
        bail!("{PERF} not found (Debian package linux-perf)");
    }
    let out = Command::new(PERF)
        .args(["stat", "-e", "cpu-clock", "true"])
        .output()
        .context("running perf stat")?;
    if !out.status.success() {
        bail!(
            "perf stat -e cpu-clock failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether hardware counters work (`perf stat -e instructions true`), for the report.
pub fn hardware_counters() -> bool {
    Command::new(PERF)
        .args(["stat", "-x,", "-e", "instructions", "true"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stderr).contains("not supported"))
        .unwrap_or(false)
}

/// Records `pid` for `secs` (blocking) into `data`.
pub fn record(pid: u32, data: &Path, secs: u64) -> anyhow::Result<()> {
    let out = Command::new(PERF)
        .args(record_args(pid, data, secs))
        .output()
        .context("running perf record")?;
    if !out.status.success() {
        bail!(
            "perf record failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Reads the samples of a recording back (`perf script`, blocking; slow with DWARF call
/// graphs, so run it after the load).
pub fn samples(data: &Path) -> anyhow::Result<Vec<Sample>> {
    let script = Command::new(PERF)
        .args(["script", "--no-inline", "-F", "comm,tid,ip,sym,dso", "-i"])
        .arg(data)
        .output()
        .context("running perf script")?;
    if !script.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&script.stderr).trim()
        );
    }
    Ok(parse_script(&String::from_utf8_lossy(&script.stdout)))
}

/// Ticks per second of `/proc` CPU times.
pub const TICKS_PER_S: f64 = 100.0;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SCRIPT: &str = "\
actix-rt|system 4242
\t    7f01 _int_malloc+0x12 (/usr/lib/libc.so.6)
\t    5501 exai_actors::journal::Journal::append+0x40 (/x/exai)
\t    5502 exai_actors::event::Recorder::record_event+0x10 (/x/exai)

sqlx-sqlite-wor 4250
\t    5601 sqlite3VdbeExec+0x99 (/x/exai)

actix-rt|system 4242
\t    5701 <exai_actors::event::Recorder>::record+0x1 (/x/exai)
\t    5702 exai::routes::v1::chat+0x1 (/x/exai)

tokio-runtime-w 4260
\tffffffff9 [unknown] ([kernel.kallsyms])
";

    #[test]
    fn samples_are_charged_to_the_innermost_pipeline_module() {
        let s = parse_script(SCRIPT);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].comm, "actix-rt|system");
        assert_eq!(s[0].frames[0], "_int_malloc");
        assert_eq!(s[0].charged().0, Bucket::Persistence);
        assert_eq!(s[1].charged().0, Bucket::Persistence);
        assert_eq!(s[2].charged().0, Bucket::Events);
        assert_eq!(s[3].charged().0, Bucket::Rest);
        let p = summarise(&s, 3);
        assert_eq!(p.samples, 4);
        assert_eq!(
            p.buckets,
            vec![
                (Bucket::Persistence, 0.5),
                (Bucket::Events, 0.25),
                (Bucket::Rest, 0.25)
            ]
        );
        assert_eq!(p.threads[0], ("actix-rt|system".to_owned(), 0.5));
        assert_eq!(p.top_persistence.len(), 2);
        assert_eq!(
            p.top_pipeline,
            vec![
                ("<exai_actors::event::Recorder>::record".to_owned(), 0.25),
                ("exai_actors::journal::Journal::append".to_owned(), 0.25),
                ("sqlite3VdbeExec".to_owned(), 0.25),
            ]
        );
    }

    #[test]
    fn samples_are_charged_to_components() {
        let s = parse_script(SCRIPT);
        assert!(s[3].in_kernel && !s[0].in_kernel);
        let names: Vec<&str> = s.iter().map(component).collect();
        assert_eq!(
            names,
            vec![
                COMPONENTS[0].0,
                COMPONENTS[0].0,
                COMPONENTS[0].0,
                "kernel (syscalls, scheduling)"
            ]
        );
        let json = Sample {
            comm: "actix-rt|system".into(),
            frames: vec![
                "_mi_page_malloc_zero".into(),
                "serde_json::de::from_slice".into(),
                "exai::http::v1::chat".into(),
            ],
            in_kernel: false,
        };
        assert_eq!(component(&json), "JSON (serde_json)");
        let alloc = Sample {
            frames: vec!["mi_free".into(), "std::rt::lang_start".into()],
            ..json
        };
        assert_eq!(component(&alloc), "allocator, not attributed");
        let p = summarise(&s, 10);
        assert_eq!(p.components[0], (COMPONENTS[0].0.to_owned(), 0.75));
    }

    #[test]
    fn the_sqlite_writer_thread_and_pipeline_paths_are_persistence() {
        let s = parse_script(
            "exai-sqlite-wr 4270\n\t    5801 _int_malloc+0x12 (/usr/lib/libc.so.6)\n\n\
             exai-flusher 4280\n\t    5901 exai_actors::pipeline::journal::Journal::sync+0x1 (/x/exai)\n\n\
             exai-sqlite-wr 4270\n\t    5a01 rusqlite::Statement::raw_execute+0x1 (/x/exai)\n",
        );
        assert_eq!(s.len(), 3);
        for sample in &s {
            assert_eq!(sample.charged().0, Bucket::Persistence, "{sample:?}");
        }
    }

    #[test]
    fn proc_stat_lines_with_odd_names_are_read() {
        let line = "4250 (sqlx (w) 1) S 1 2 3 4 5 6 7 8 9 10 250 17 0 0 20 0";
        assert_eq!(parse_stat(line), Some(("sqlx (w) 1".to_owned(), 267)));
        let before: TaskTimes = [(1, ("worker-1".to_owned(), 10)), (2, ("main".into(), 5))]
            .into_iter()
            .collect();
        let after: TaskTimes = [
            (1, ("worker-1".to_owned(), 30)),
            (2, ("main".into(), 5)),
            (3, ("worker-2".into(), 7)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            by_thread(&before, &after),
            vec![("worker-N".to_owned(), 27)]
        );
    }
}
