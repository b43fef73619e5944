//! Validation: the rules that hold between settings (and the checks a parser cannot make),
//! run once everything is read, after every value's own problems were collected.
//!
//! Nothing stops at the first problem: each is added to the shared [`Errors`] with the key it
//! concerns (the environment variable when one is set, else the `exai.toml` key), and
//! [`Errors::finish`] returns them all. `exai` prints one line per problem and exits 2.

use std::collections::HashMap;
use std::path::Path;

use super::env::{self, Entry, key_of};
use super::error::Errors;
use super::model::Config;

/// Checks the rules between settings and the ones a parser cannot see (a value of 0 where
/// one is the least that makes sense, a data directory that cannot be written).
pub fn check(config: &Config, env: &HashMap<String, String>, errors: &mut Errors) {
    let mut fail = |entry: &dyn Entry, message: String| errors.push(&key_of(env, entry), message);
    let s = &config.server;
    let at_least_one: [(&dyn Entry, u64); 4] = [
        (&env::SESSION_MAX_INFLIGHT, s.session_max_inflight as u64),
        (&env::MCP_MAX_SESSIONS, s.mcp_max_sessions as u64),
        (
            &env::DASHBOARD_CLIENT_QUEUE,
            s.dashboard_client_queue as u64,
        ),
        (
            &env::HTTP_MAX_BODY_BYTES_IN_FLIGHT,
            s.http_max_body_bytes_in_flight as u64,
        ),
    ];
    for (entry, n) in at_least_one {
        if n == 0 {
            fail(entry, "must be at least 1".to_owned());
        }
    }
    if s.global_max_inflight <= s.session_max_inflight {
        fail(
            &env::GLOBAL_MAX_INFLIGHT,
            format!(
                "global in-flight limit ({}) must be larger than the per-session limit ({})",
                s.global_max_inflight, s.session_max_inflight
            ),
        );
    }
    if s.client_timeout <= s.heartbeat_interval {
        fail(
            &env::CLIENT_TIMEOUT,
            "must be longer than the heartbeat interval".to_owned(),
        );
    }
    if s.max_pending_hello == 0 || s.max_pending_hello > s.max_connections {
        fail(
            &env::MAX_PENDING_HELLO,
            format!(
                "must be between 1 and the connection limit ({})",
                s.max_connections
            ),
        );
    }
    if !s.host.is_loopback() && s.token.is_none() && !s.allow_no_auth {
        fail(
            &env::HOST,
            format!(
                "binding non-loopback address {} without EXAI_WS_TOKEN is refused; set a token \
                 or pass --allow-no-auth",
                s.host
            ),
        );
    }
    if let Err(message) = check_data_dir(&config.data_dir) {
        fail(&env::DATA_DIR, message);
    }
    let m = &config.metrics;
    if m.batch_size == 0 {
        fail(&env::BUFFER_SIZE, "must be at least 1".to_owned());
    }
    if m.max_buffered < m.batch_size {
        fail(
            &env::MAX_BUFFERED,
            format!("must be at least the flush batch size ({})", m.batch_size),
        );
    }
    for (entry, n) in [
        (&env::UPSTREAM_MAX_BYTES, config.upstream.max_bytes),
        (
            &env::SSE_MAX_EVENT_BYTES,
            config.upstream.sse_max_event_bytes,
        ),
    ] {
        if n == 0 {
            fail(entry, "must be at least 1 byte".to_owned());
        }
    }
    if config.tools.file_max_bytes == 0 {
        fail(&env::FILE_MAX_BYTES, "must be at least 1".to_owned());
    }
}

/// The data directory must exist (or be creatable) and be writable.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".exai-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .map_err(|e| format!("data directory {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
