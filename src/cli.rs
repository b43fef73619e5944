//! The command line: `exai [serve]`, `exai check-config`, `exai migrate`, `exai config-docs`,
//! `exai mock-upstream`, `exai demo`, `exai mcp`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::CliOverrides;

/// exai: a gateway daemon for AI model providers.
#[derive(Debug, Parser)]
#[command(name = "exai", version, about)]
pub struct Cli {
    /// Configuration file (default: ./exai.toml when present, or $EXAI_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving options given before the subcommand (`exai --port N serve`); they apply to
    /// `serve`, `check-config` and `demo` as if given after it, which wins on a clash.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Options for serving.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Allow binding a non-loopback address without EXAI_WS_TOKEN.
    #[arg(long)]
    pub allow_no_auth: bool,
    /// Address to bind (overrides EXAI_WS_HOST).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind (overrides EXAI_WS_PORT).
    #[arg(long)]
    pub port: Option<u16>,
}

impl ServeArgs {
    /// These options, with `outer` (given before the subcommand) filling what these omit.
    pub fn over(&self, outer: &ServeArgs) -> ServeArgs {
        ServeArgs {
            allow_no_auth: self.allow_no_auth || outer.allow_no_auth,
            host: self.host.clone().or_else(|| outer.host.clone()),
            port: self.port.or(outer.port),
        }
    }

    /// The overrides these options make to the configuration.
    pub fn overrides(&self) -> CliOverrides {
        CliOverrides {
            allow_no_auth: self.allow_no_auth,
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Print docs/configuration.md: every setting, rendered from the settings table.
    ConfigDocs,
    /// Run the mock OpenAI-compatible upstream used by tests, benchmarks and the demo.
    MockUpstream {
        /// Port to listen on (127.0.0.1); 9090 when neither this nor a `--port` before the
        /// subcommand is given.
        #[arg(long)]
        port: Option<u16>,
        /// Added latency per response, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Speak MCP over stdin/stdout, bridged to the running daemon's `/mcp`
    /// (EXAI_WS_HOST:EXAI_WS_PORT, with EXAI_WS_TOKEN).
    Mcp {
        /// The daemon's MCP endpoint (default http://EXAI_WS_HOST:EXAI_WS_PORT/mcp).
        #[arg(long, conflicts_with = "embedded")]
        url: Option<String>,
        /// Start the gateway in this process (on a free loopback port) instead of using a
        /// running daemon; the configuration is read as `exai serve` reads it.
        #[arg(long)]
        embedded: bool,
    },
    /// Run exai with a simulated provider and a light stream of traffic; no API keys needed.
    Demo(ServeArgs),
}
