//! `precommit`'s final step gathers the pending changes: `git diff` run in `path` (a
//! directory under the file roots), without a shell, with a timeout and a bounded output.
//!
//! With `compare_to`, the diff is against that ref; otherwise the staged (`--cached`) and
//! unstaged changes, as `include_staged` / `include_unstaged` ask (both by default). Git runs
//! with external diff drivers, text conversion and fsmonitor hooks turned off, so a repository's
//! configuration cannot make it run other programs, and with the root's parent as its ceiling,
//! so it never finds a repository above the file root (whose diff would show files outside
//! it). The child is killed when the call is dropped (cancelled) or runs past [`GIT_TIMEOUT`].

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::AsyncReadExt as _;

use super::tool::ToolContext;
use crate::error::GatewayError;

/// Longest one git command may run.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest accepted `compare_to`.
const MAX_REF_LEN: usize = 200;

/// Whether `r` is a plain git ref or revision expression (no option, no shell syntax).
fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= MAX_REF_LEN
        && !r.starts_with('-')
        && r.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~' | b'^' | b'@')
        })
}

/// Runs `git <args>` in `dir`, never looking for a repository in `ceiling` or above; at most
/// `limit` bytes of its output are kept.
async fn git(
    dir: &std::path::Path,
    ceiling: Option<&std::path::Path>,
    args: &[&str],
    limit: usize,
) -> Result<(String, bool), GatewayError> {
    let mut command = tokio::process::Command::new("git");
    if let Some(ceiling) = ceiling {
        command.env("GIT_CEILING_DIRECTORIES", ceiling);
    }
    let mut child = command
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.quotepath=off",
            "--no-pager",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| GatewayError::ToolFailed(format!("cannot run git: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| GatewayError::Internal("git stdout missing".to_owned()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| GatewayError::Internal("git stderr missing".to_owned()))?;
    let run = async {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        (&mut stdout)
            .take(cap)
            .read_to_end(&mut out)
            .await
            .map_err(|e| GatewayError::ToolFailed(format!("reading git output: {e}")))?;
        let cut = out.len() > limit;
        if cut {
            // Enough read: stop git rather than drain the rest.
            let _ = child.start_kill();
        }
        let mut err = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut err).await;
        let status = child
            .wait()
            .await
            .map_err(|e| GatewayError::ToolFailed(format!("waiting for git: {e}")))?;
        if !cut && !status.success() {
            return Err(GatewayError::ToolFailed(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&err).trim()
            )));
        }
        out.truncate(limit);
        Ok((String::from_utf8_lossy(&out).into_owned(), cut))
    };
    tokio::time::timeout(GIT_TIMEOUT, run)
        .await
        .map_err(|_| GatewayError::Timeout(GIT_TIMEOUT))?
}

/// The pending changes as a prompt section.
pub async fn changes(
    ctx: &ToolContext<'_>,
    extras: &Map<String, Value>,
) -> Result<String, GatewayError> {
    let Some(raw) = extras.get("path").and_then(Value::as_str) else {
        return Err(GatewayError::validation(
            "path",
            "is required (on the final step or an earlier one): the repository directory",
        ));
    };
    let roots = ctx.services.files.clone();
    let owned = raw.to_owned();
    let dir = tokio::task::spawn_blocking(move || roots.check("path", &owned))
        .await
        .map_err(|e| GatewayError::Internal(format!("path check failed: {e}")))??;
    if !dir.is_dir() {
        return Err(GatewayError::validation(
            "path",
            format!("{raw:?} is not a directory"),
        ));
    }
    let flag = |name: &str| extras.get(name).and_then(Value::as_bool).unwrap_or(true);
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    match extras.get("compare_to").and_then(Value::as_str) {
        Some(r) if !valid_ref(r) => {
            return Err(GatewayError::validation(
                "compare_to",
                "must be a git ref (letters, digits and . _ - / ~ ^ @, not starting with -)",
            ));
        }
        Some(r) => runs.push((format!("changes against {r}"), vec![r.to_owned()])),
        None => {
            if flag("include_staged") {
                runs.push(("staged changes".to_owned(), vec!["--cached".to_owned()]));
            }
            if flag("include_unstaged") {
                runs.push(("unstaged changes".to_owned(), Vec::new()));
            }
        }
    }
    if runs.is_empty() {
        return Err(GatewayError::validation(
            "include_staged",
            "nothing to validate: include_staged and include_unstaged are both false",
        ));
    }
    let ceiling = ctx
        .services
        .files
        .root_of(&dir)
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf);
    let mut budget = ctx.services.files.max_bytes() / 2;
    let mut out = format!("## Git changes in {}\n", dir.display());
    for (label, extra) in runs {
        let mut args = vec!["diff", "--no-color", "--no-ext-diff", "--no-textconv"];
        args.extend(extra.iter().map(String::as_str));
        args.push("--");
        let (diff, cut) = git(&dir, ceiling.as_deref(), &args, budget.max(1)).await?;
        budget = budget.saturating_sub(diff.len());
        if diff.trim().is_empty() {
            out.push_str(&format!("\n### {label}\n(none)\n"));
        } else {
            out.push_str(&format!("\n### {label}\n```diff\n{diff}\n```\n"));
        }
        if cut {
            out.push_str("NOTE: the diff was cut (EXAI_FILE_MAX_BYTES)\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_plain() {
        assert!(valid_ref("main"));
        assert!(valid_ref("origin/feature-x~2"));
        assert!(!valid_ref("--output=/tmp/x"));
        assert!(!valid_ref("main; rm -rf /"));
        assert!(!valid_ref(""));
    }
}
