//! Drives `wrk` (the Debian package) and reads its figures.
//!
//! Every run gets a small generated Lua script: the POST body and headers, and a `done()`
//! hook that prints one line (`EXAI_WRK key=value …`) with the request count, the errors by
//! kind and exact latency percentiles from wrk's own histogram, so nothing is read from wrk's
//! human-oriented summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// Where the Debian package installs wrk.
pub const WRK: &str = "/usr/bin/wrk";
/// The prefix of the line the generated `done()` prints.
const MARK: &str = "EXAI_WRK";

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    /// Responses read (any status).
    pub requests: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
    pub errors: u64,
    /// Latency percentiles, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
}

impl WrkResult {
    /// Successful responses per second.
    pub fn rps(&self) -> f64 {
        self.requests.saturating_sub(self.errors) as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// One request shape for wrk: a POST of `body` with optional bearer token.
#[derive(Debug, Clone)]
pub struct Post {
    /// The JSON body.
    pub body: String,
    /// `Authorization: Bearer …`, if any.
    pub token: Option<String>,
}

impl Post {
    /// The Lua script for this request.
    pub fn lua(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "wrk.method = \"POST\"");
        let _ = writeln!(s, "wrk.body = {}", lua_string(&self.body));
        let _ = writeln!(s, "wrk.headers[\"Content-Type\"] = \"application/json\"");
        if let Some(t) = &self.token {
            let _ = writeln!(
                s,
                "wrk.headers[\"Authorization\"] = {}",
                lua_string(&format!("Bearer {t}"))
            );
        }
        let _ = writeln!(
            s,
            r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{MARK} requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end"#
        );
        s
    }
}

/// A Lua long-bracket string literal holding `text` exactly.
fn lua_string(text: &str) -> String {
    let mut level = 0;
    while text.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    // A newline right after the opening bracket is dropped by Lua; add one so a body starting
    // with a newline survives.
    format!("[{eq}[\n{text}]{eq}]")
}

/// Runs `wrk -t<threads> -c<conns> -d<secs>` against `url` with `post`'s script (written to
/// `dir`), returning the parsed figures.
pub fn run(
    dir: &Path,
    url: &str,
    post: &Post,
    threads: usize,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let script = script_path(dir, post)?;
    let out = Command::new(WRK)
        .args([
            &format!("-t{threads}"),
            &format!("-c{conns}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .with_context(|| format!("running {WRK} (install the Debian package wrk)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&stdout).with_context(|| format!("no {MARK} line in wrk's output: {stdout}"))
}

/// Writes `post`'s script into `dir` (one file per distinct script) and returns its path.
fn script_path(dir: &Path, post: &Post) -> anyhow::Result<PathBuf> {
    let lua = post.lua();
    let name = format!("wrk-{:016x}.lua", fnv1a(lua.as_bytes()));
    let path = dir.join(name);
    if !path.exists() {
        std::fs::write(&path, lua).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// A stable hash for file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads the `done()` line out of wrk's output.
pub fn parse(output: &str) -> Option<WrkResult> {
    let line = output.lines().find_map(|l| l.strip_prefix(MARK))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(WrkResult {
        requests: field("requests")?,
        duration: Duration::from_micros(field("duration_us")?),
        errors: field("errors")?,
        p50: field("p50")?,
        p99: field("p99")?,
        p999: field("p999")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_done_line_is_read_among_wrks_own_output() {
        let out = "Running 2s test @ http://127.0.0.1:1/v1/chat/completions\n  1 threads and 1 connections\n\
                   EXAI_WRK requests=20000 duration_us=2000000 errors=3 p50=61 p99=140 p999=900\n";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 20000);
        assert_eq!(r.errors, 3);
        assert_eq!((r.p50, r.p99, r.p999), (61, 140, 900));
        assert!((r.rps() - 9998.5).abs() < 0.01, "{}", r.rps());
        assert!(parse("Running 2s test\n").is_none());
        assert!(parse("EXAI_WRK requests=1 duration_us=x\n").is_none());
    }

    #[test]
    fn the_script_carries_the_body_verbatim_even_with_brackets() {
        let body = r#"{"messages":[{"content":"a]]b]=]c"}]}"#;
        let lua = Post {
            body: body.into(),
            token: Some("t0k".into()),
        }
        .lua();
        assert!(lua.contains(&format!("[==[\n{body}]==]")), "{lua}");
        assert!(lua.contains("Bearer t0k"));
        assert!(lua.contains("done = function"));
    }
}
