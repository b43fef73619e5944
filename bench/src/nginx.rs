//! nginx (the Debian package) as the reference: a canned upstream, and a plain `proxy_pass`
//! hop in front of it.
//!
//! Each instance runs unprivileged in the foreground (`daemon off`) from its own generated
//! configuration under the harness's scratch directory: its pid file, error log and temp
//! paths live there, it listens on a free loopback port, and it writes no access log. When
//! the harness runs as root, nginx's workers drop to `nobody` as usual; no root-owned path is
//! used either way.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::procs::{Proc, free_port};

/// Where the Debian package installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// The model every canned answer names.
pub const MODEL: &str = "bench-echo";

/// A canned `chat.completion` of realistic size (about 1.2 KB, the shape OpenAI returns for a
/// short answer, with `usage` and its details).
pub fn completion_body() -> String {
    let content = "Connection pooling keeps a small set of open connections to the upstream and \
        hands one to each request instead of dialling a new one, so a request pays for a TCP \
        handshake only when the pool is empty. Size the pool to the number of requests you \
        expect in flight at the busiest moment, keep idle connections for a little less than \
        the upstream's own keep-alive timeout, and retry a request once on a fresh connection \
        when a pooled one turns out to have been closed by the other side.";
    serde_json::json!({
        "id": "chatcmpl-bench-0001",
        "object": "chat.completion",
        "created": 1_764_547_200,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 31,
            "completion_tokens": 96,
            "total_tokens": 127,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    })
    .to_string()
}

/// The canned `GET /v1/models` list (exai asks for it at start-up).
fn models_body() -> String {
    serde_json::json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}],
    })
    .to_string()
}

/// The request every row sends: a short chat for [`MODEL`] (the same prompt each time).
pub fn request_body() -> String {
    serde_json::json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for backend engineers."},
            {"role": "user", "content": "How should I size an HTTP connection pool to an upstream API?"},
        ],
        "temperature": 0.2,
    })
    .to_string()
}

/// `text` as an nginx single-quoted string. nginx expands `$variables` inside strings, so a
/// `$` is refused rather than escaped (the canned bodies have none).
fn quoted(text: &str) -> anyhow::Result<String> {
    if text.contains('$') {
        bail!("an nginx string cannot hold a literal '$'");
    }
    Ok(format!(
        "'{}'",
        text.replace('\\', "\\\\").replace('\'', "\\'")
    ))
}

/// A running nginx, shut down on drop.
pub struct Nginx {
    /// Where it listens (127.0.0.1).
    pub port: u16,
    /// The master process (`None` once stopped).
    proc: Option<Proc>,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers and exits; a SIGKILL would leave the
    /// workers running, holding their ports.
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            let _ = p.stop(Duration::from_secs(10));
        }
    }
}

/// What an instance serves.
pub enum Role {
    /// The canned upstream: `POST /v1/chat/completions` and `GET /v1/models`.
    Upstream,
    /// `proxy_pass` to the upstream on this port, with keep-alive connections to it.
    Proxy(u16),
}

impl Nginx {
    /// Writes a configuration for `role` under `dir/name` and starts nginx on a free port.
    pub async fn start(
        client: &reqwest::Client,
        dir: &Path,
        name: &str,
        role: Role,
    ) -> anyhow::Result<Nginx> {
        if !Path::new(NGINX).exists() {
            bail!("{NGINX} not found: install the Debian package nginx (or nginx-light)");
        }
        let root = dir.join(name);
        std::fs::create_dir_all(&root)?;
        let port = free_port()?;
        let conf = config(&root, port, &role)?;
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = root.join("stderr.log");
        let proc = Proc::spawn(
            name,
            Path::new(NGINX),
            &[
                "-p",
                &root.display().to_string(),
                "-c",
                &conf_path.display().to_string(),
                "-e",
                &root.join("error.log").display().to_string(),
            ],
            &HashMap::new(),
            &log,
        )?;
        // Built before the wait, so that a failed start still shuts nginx down (drop).
        let nginx = Nginx {
            port,
            proc: Some(proc),
        };
        let url = format!("http://127.0.0.1:{port}/v1/models");
        crate::procs::wait_ok(client, &url, Duration::from_secs(10))
            .await
            .with_context(|| {
                format!(
                    "nginx ({name}) did not start; see {} and {}",
                    log.display(),
                    root.join("error.log").display()
                )
            })?;
        Ok(nginx)
    }

    /// The master's pid (its workers are its children), once started.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Its chat URL.
    pub fn chat_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port)
    }
}

/// The configuration text.
fn config(root: &Path, port: u16, role: &Role) -> anyhow::Result<String> {
    let r = root.display();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {r}/nginx.pid;\n\
         error_log {r}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  \
         access_log off;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n  \
         fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n  \
         keepalive_requests 100000000;\n  keepalive_timeout 300s;"
    );
    match role {
        Role::Upstream => {
            let _ = writeln!(
                s,
                "  server {{\n    listen 127.0.0.1:{port};\n    default_type application/json;\n    \
                 location = /v1/chat/completions {{ return 200 {}; }}\n    \
                 location = /v1/models {{ return 200 {}; }}\n  }}",
                quoted(&completion_body())?,
                quoted(&models_body())?
            );
        }
        Role::Proxy(upstream) => {
            let _ = writeln!(
                s,
                "  upstream canned {{\n    server 127.0.0.1:{upstream};\n    keepalive 64;\n    \
                 keepalive_requests 100000000;\n    keepalive_timeout 300s;\n  }}\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
                 proxy_pass http://canned;\n      proxy_http_version 1.1;\n      \
                 proxy_set_header Connection \"\";\n    }}\n  }}"
            );
        }
    }
    s.push_str("}\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strings_are_quoted_for_nginx_and_dollars_refused() {
        assert_eq!(
            quoted(r#"{"a":"it's \\n"}"#).unwrap(),
            r#"'{"a":"it\'s \\\\n"}'"#
        );
        assert!(quoted("costs $5").is_err());
        let body = completion_body();
        assert!((1000..1600).contains(&body.len()), "{}", body.len());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 127);
    }

    #[test]
    fn the_proxy_keeps_connections_to_its_upstream() {
        let c = config(Path::new("/tmp/x"), 8001, &Role::Proxy(8002)).unwrap();
        assert!(c.contains("server 127.0.0.1:8002;"));
        assert!(c.contains("listen 127.0.0.1:8001;"));
        assert!(c.contains("keepalive 64;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
    }
}
