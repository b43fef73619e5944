//! `docs/configuration.md`, rendered from the settings table ([`super::env`]) so it cannot
//! drift: `exai config-docs > docs/configuration.md` writes it, and a unit test fails when
//! the committed file differs.

use std::fmt::Write as _;

use super::env::{ENV_PROVIDERS, SETTINGS};
use super::model::{CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE, MIN_TOKEN_LEN};
use super::raw::PROVIDER_KEYS;

/// The command that regenerates the file.
pub const REGENERATE: &str = "cargo run -- config-docs > docs/configuration.md";

/// `a`, `b` as code spans.
fn codes(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A default as a code span; prose (`working directory`) and `—` as they are.
fn shown(default: &str) -> String {
    let literal = default.starts_with(|c: char| c.is_ascii_digit()) || !default.contains(' ');
    if default == "—" || default.contains('`') || !literal {
        default.to_owned()
    } else {
        format!("`{default}`")
    }
}

/// The whole document.
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "# Configuration\n\n\
         <!-- Generated from src/config/env.rs by `exai config-docs`; do not edit by hand.\n     \
         Regenerate with: {REGENERATE} -->\n\n\
         exai reads an optional `{DEFAULT_CONFIG_FILE}` (in the working directory, or the file \
         named by `--config` or `{CONFIG_FILE_ENV}`), then environment variables, which win. \
         Where a setting has several environment names (the original daemon's names are \
         accepted), the first one set wins. `--host`, `--port` and `--allow-no-auth` win over \
         both.\n\n\
         Everything is validated before anything starts, and **every** problem is reported, \
         one line each, naming its key (the environment variable when one is set, else the \
         `exai.toml` key): `EXAI_WS_PORT: expected a port number…`, \
         `` server.prot: unknown key in exai.toml (did you mean `port`?) ``, or for a syntax \
         error the file, line and column, \
         `` exai.toml:3:1: not valid TOML: duplicate key (at `port`) ``. \
         Then exai exits with status 2. `exai check-config` prints the effective configuration \
         as JSON, secrets as `[redacted]` and URLs with their credentials and query values \
         replaced. Tokens need at least {MIN_TOKEN_LEN} characters. Binding a non-loopback \
         address without `EXAI_WS_TOKEN` is refused unless `--allow-no-auth` is given.\n\n\
         Durations are in the unit their key names (`_s` seconds, fractions allowed; `_ms` \
         milliseconds; `_days`); byte sizes are in bytes. In `exai.toml` numbers and booleans \
         may also be written as strings.\n\n\
         ## Settings\n\n\
         | environment | `exai.toml` key | type | default | meaning |\n\
         |---|---|---|---|---|\n"
    );
    for s in SETTINGS {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            codes(s.env()),
            s.key(),
            s.kind(),
            shown(&s.default_doc()),
            s.about()
        );
    }
    out.push_str(
        "\n## Providers\n\n\
         Each `[[providers]]` table configures one upstream:\n\n\
         ```toml\n\
         [[providers]]\n\
         name = \"local\"\n\
         kind = \"openai_compatible\"\n\
         base_url = \"http://127.0.0.1:11434/v1\"\n\
         models = [\"llama3.1\"]\n\
         # api_key = \"...\"\n\
         ```\n\n\
         | key | type | default | meaning |\n\
         |---|---|---|---|\n",
    );
    for k in PROVIDER_KEYS {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            k.key,
            k.kind,
            shown(&(k.default)()),
            k.about
        );
    }
    out.push_str(
        "\nKind `anthropic` speaks Anthropic's Messages API (`POST <base_url>/messages` with \
         `x-api-key` and `anthropic-version`); it also fits Kimi's and GLM's \
         Anthropic-compatible endpoints, e.g. `https://api.moonshot.ai/anthropic/v1` (the base URL \
         without the trailing `/messages`). It is not configured from the environment; list its \
         models in `models`. The limits of `[upstream]` apply to every provider.\n\n\
         The original daemon's variables configure these providers too (one already in \
         `exai.toml` under the same name is left as it is):\n\n\
         | environment | provider | meaning |\n\
         |---|---|---|\n",
    );
    for p in ENV_PROVIDERS {
        let _ = writeln!(
            out,
            "| {} | `{}` (kind `{}`) | API key; configures the provider |",
            codes(p.api_key),
            p.name,
            p.kind.as_str()
        );
        let url = match p.kind.default_base_url() {
            Some(u) => format!("base URL (default `{u}`)"),
            None => "base URL; configures the provider (required with its key)".to_owned(),
        };
        let _ = writeln!(out, "| `{}` | `{}` | {url} |", p.base_url, p.name);
    }
    let _ = writeln!(
        out,
        "| `{}` | `{}` | a model it serves |",
        super::env::CUSTOM_MODEL_NAME,
        super::env::CUSTOM_PROVIDER
    );
    out
}
