//! `--compare-bin PATH`: `/v1` figures of another exai binary (say, the build before a
//! change) beside this build's, measured in one run against the same mock upstream. Both
//! instances run side by side with the same configuration, each on a fresh database; the
//! measurements alternate between them (before, after, after, before, …) so drift in the
//! machine's speed falls on both. Writes a marked section into the report file instead of
//! regenerating it ([`splice`]); a later full run keeps that section.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::loadgen::RunResult;
use crate::{Ctx, Load, TOKEN, create_db, run_http, v1_url};

/// Start of the section in the report.
pub const BEGIN: &str = "<!-- compare-bin:begin -->";
/// End of the section in the report.
pub const END: &str = "<!-- compare-bin:end -->";

/// One measurement of one binary.
struct Sample {
    /// 32 connections, closed loop.
    c32: RunResult,
    /// Concurrency 1, closed loop.
    c1: RunResult,
}

/// Median of `values` (0 when empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The figures of one binary over its samples.
struct Summary {
    /// Median req/s at 32 connections, and the range.
    c32: (f64, f64, f64),
    /// Median p50 and p99 at concurrency 1, µs.
    c1: (f64, f64),
    /// Median req/s at concurrency 1.
    c1_rps: f64,
    /// Failed requests over all samples.
    errors: u64,
}

impl Summary {
    fn of(samples: &[Sample]) -> Summary {
        let c32: Vec<f64> = samples.iter().map(|s| s.c32.throughput()).collect();
        let lo = c32.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c32.iter().copied().fold(0.0, f64::max);
        Summary {
            c32: (median(c32), lo, hi),
            c1: (
                median(samples.iter().map(|s| s.c1.us(0.5) as f64).collect()),
                median(samples.iter().map(|s| s.c1.us(0.99) as f64).collect()),
            ),
            c1_rps: median(samples.iter().map(|s| s.c1.throughput()).collect()),
            errors: samples.iter().map(|s| s.c32.errors + s.c1.errors).sum(),
        }
    }
}

/// Measures both binaries on one backend; `urls` are their databases (before, after).
async fn backend(
    ctx: &Ctx,
    before: &Path,
    name: &str,
    urls: (&str, &str),
    reps: usize,
) -> anyhow::Result<(Summary, Summary, f64)> {
    let (old, old_port, _) = ctx
        .start_exai_bin(before, &format!("{name}-before"), urls.0, &[])
        .await?;
    let (new, new_port, _) = ctx
        .start_exai_bin(&ctx.exai, &format!("{name}-after"), urls.1, &[])
        .await?;
    let span = ctx.secs(5, 3);
    let warm = Load::Closed {
        workers: 4,
        duration: Duration::from_secs(1),
        max: u64::MAX,
    };
    let c32 = Load::Closed {
        workers: 32,
        duration: span,
        max: u64::MAX,
    };
    let c1 = Load::Closed {
        workers: 1,
        duration: span,
        max: 20_000,
    };
    let mock = format!("http://127.0.0.1:{}/v1/chat/completions", ctx.mock_port);
    for port in [old_port, new_port] {
        run_http(ctx, v1_url(port), Some(TOKEN), warm, true).await;
    }
    let baseline = run_http(ctx, mock, None, c32, true).await.throughput();
    let (mut olds, mut news) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let order = if rep % 2 == 0 {
            [(old_port, true), (new_port, false)]
        } else {
            [(new_port, false), (old_port, true)]
        };
        for (port, is_old) in order {
            eprintln!(
                "[bench] compare {name} rep {rep}: {}",
                if is_old { "before" } else { "after" }
            );
            let c32 = run_http(ctx, v1_url(port), Some(TOKEN), c32, true).await;
            settle(ctx, [old_port, new_port]).await;
            let c1 = run_http(ctx, v1_url(port), Some(TOKEN), c1, true).await;
            settle(ctx, [old_port, new_port]).await;
            let sample = Sample { c32, c1 };
            if is_old {
                olds.push(sample);
            } else {
                news.push(sample);
            }
        }
    }
    old.stop(Duration::from_secs(30))?;
    new.stop(Duration::from_secs(30))?;
    Ok((Summary::of(&olds), Summary::of(&news), baseline))
}

/// Waits (up to 60 s) until neither instance has events waiting for its store, so the
/// flush of one phase's backlog does not run during the next phase (of either binary).
async fn settle(ctx: &Ctx, ports: [u16; 2]) {
    for port in ports {
        if let Err(e) = pipeline_idle(ctx, port, Duration::from_secs(60)).await {
            eprintln!("[bench] compare: exai on {port} did not settle: {e:#}");
        }
    }
}

/// Polls `/health` until the pipeline reports nothing buffered and nothing spilled (fields
/// both builds publish).
async fn pipeline_idle(ctx: &Ctx, port: u16, within: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        let health = crate::health(ctx, port).await?;
        let pipeline = &health["components"]["pipeline"];
        let waiting = |field: &str| pipeline[field].as_u64();
        match (waiting("buffered"), waiting("spilled_bytes")) {
            (Some(0), Some(0)) => return Ok(()),
            (Some(_), Some(_)) => {}
            _ => anyhow::bail!("no pipeline.buffered / spilled_bytes in /health"),
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "still busy after {within:?}: {pipeline}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the comparison on SQLite and PostgreSQL and returns the report section.
pub async fn run(ctx: &Ctx, before: &Path) -> anyhow::Result<String> {
    let reps = if ctx.opts.quick { 2 } else { 3 };
    let mut rows = Vec::new();
    let sqlite = |label: &str| format!("sqlite://{}/compare-{label}.db", ctx.work.display());
    let (b, a) = (sqlite("before"), sqlite("after"));
    eprintln!("[bench] compare on SQLite");
    rows.push((
        "sqlite",
        backend(ctx, before, "sqlite", (&b, &a), reps).await?,
    ));
    eprintln!("[bench] compare on PostgreSQL");
    let b = create_db("exai_bench_compare_before").await?;
    let a = create_db("exai_bench_compare_after").await?;
    rows.push((
        "postgres",
        backend(ctx, before, "postgres", (&b, &a), reps).await?,
    ));
    Ok(section(ctx, before, reps, &rows))
}

/// The report section.
fn section(
    ctx: &Ctx,
    before: &Path,
    reps: usize,
    rows: &[(&str, (Summary, Summary, f64))],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "## `/v1` before and after the write-ahead journal (issue 12)\n\n\
         Measured by `{}` on {}: the build before the change (`{}`) and this build, side by \
         side with the same configuration (cache on, unique prompts, so each request is a miss and \
         records its events: four before issue 17, two since), each on a fresh database, against the same mock upstream. Each binary \
         was measured {reps} times, alternating (before, after, after, before, …), {} s at 32 \
         connections then {} s at concurrency 1 each time, waiting after each phase until \
         neither instance has events waiting for its store (so one phase's flush backlog does \
         not run during the next); the tables give medians (and the range at 32 connections). Both exai instances, the mock and the load generator share \
         the machine's cores, and other work ran on it at the same time, so differences of a \
         few percent are within the noise of one run.\n",
        ctx.opts.command,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        before.display(),
        ctx.secs(5, 3).as_secs(),
        ctx.secs(5, 3).as_secs(),
    );
    let _ = writeln!(
        s,
        "| backend | build | /v1 req/s, 32 conns (range) | c=1 p50 µs | c=1 p99 µs | c=1 req/s | errors |\n\
         |---|---|---|---|---|---|---|"
    );
    for (name, (old, new, baseline)) in rows {
        for (label, sum) in [("before", old), ("after", new)] {
            let _ = writeln!(
                s,
                "| {name} | {label} | {:.0} ({:.0}–{:.0}) | {:.0} | {:.0} | {:.0} | {} |",
                sum.c32.0, sum.c32.1, sum.c32.2, sum.c1.0, sum.c1.1, sum.c1_rps, sum.errors
            );
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let _ = writeln!(
            s,
            "| {name} | after ÷ before | {:.3} | {:.3} | {:.3} | {:.3} | |",
            ratio(new.c32.0, old.c32.0),
            ratio(new.c1.0, old.c1.0),
            ratio(new.c1.1, old.c1.1),
            ratio(new.c1_rps, old.c1_rps),
        );
        let _ = writeln!(
            s,
            "| {name} | mock upstream alone (baseline) | {baseline:.0} | | | | |"
        );
    }
    let _ = writeln!(s, "\n{END}");
    s
}

/// The marked section of `doc`, if it has one.
pub fn extract(doc: &str) -> Option<&str> {
    let begin = doc.find(BEGIN)?;
    let end = doc[begin..].find(END)? + begin + END.len();
    Some(&doc[begin..end])
}

/// `doc` with its marked section replaced by `section`; without one, `section` goes before
/// the profiling notes (or at the end).
pub fn splice(doc: &str, section: &str) -> String {
    let section = section.trim_end();
    if let Some(old) = extract(doc) {
        return doc.replacen(old, section, 1);
    }
    match doc.find("\n## Profiling notes") {
        Some(at) => format!("{}\n{section}\n{}", &doc[..at], &doc[at..]),
        None => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_or_inserted_before_the_notes() {
        let one = format!("{BEGIN}\nA\n{END}\n");
        let two = format!("{BEGIN}\nB\n{END}\n");
        let doc = "# t\n\n## 1. x\n\n## Profiling notes\n\nn\n";
        let first = splice(doc, &one);
        assert!(first.find("A").unwrap() < first.find("## Profiling").unwrap());
        let second = splice(&first, &two);
        assert_eq!(second.matches(BEGIN).count(), 1);
        assert!(second.contains("B") && !second.contains("\nA\n"));
        assert_eq!(
            extract(&second),
            Some(format!("{BEGIN}\nB\n{END}").as_str())
        );
        assert_eq!(splice("# t", &one), format!("# t\n\n{BEGIN}\nA\n{END}\n"));
    }
}
