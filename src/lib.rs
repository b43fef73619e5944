//! exai: a gateway daemon for AI model providers.
//!
//! This crate is the HTTP and WebSocket layer, configuration, start-up and the CLI; the
//! actors live in `exai-actors`, the mock upstream and the test helpers in `exai-testkit`. The
//! module map is in `docs/architecture.md`.

pub mod app;
pub mod auth;
pub mod banner;
pub mod call_record;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod files;
pub mod gateway;
pub mod http;
pub mod lifecycle;
pub mod mcp;
pub mod pricing;
pub mod prometheus;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod tools;
pub mod ws;

use std::process::ExitCode;

use cli::{Cli, Command};
use config::{CliOverrides, Config};

/// Exit status for configuration problems.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve(cli.config.as_deref(), &cli.serve.overrides()),
        Some(Command::Serve(args)) => {
            serve(cli.config.as_deref(), &args.over(&cli.serve).overrides())
        }
        Some(Command::CheckConfig(args)) => {
            let overrides = args.over(&cli.serve).overrides();
            let Some(config) = load_config(cli.config.as_deref(), &overrides) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Migrate) => {
            let Some(config) = load_config(cli.config.as_deref(), &CliOverrides::default()) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            telemetry::init(&config.log);
            migrate(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::MockUpstream { port, latency_ms }) => {
            telemetry::init(&config::LogConfig {
                filter: std::env::var("EXAI_LOG").unwrap_or_else(|_| "warn".to_owned()),
                format: config::LogFormat::Pretty,
                access_log: false,
            });
            actix_rt::System::new().block_on(exai_testkit::mock_upstream::run(
                port.or(cli.serve.port).unwrap_or(9090),
                std::time::Duration::from_millis(latency_ms),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::ConfigDocs) => {
            print!("{}", config::docs::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Mcp { url, embedded }) => {
            if !embedded {
                // The daemon's address and token as `exai serve` reads them.
                let Some(config) = load_config(cli.config.as_deref(), &cli.serve.overrides())
                else {
                    return Ok(ExitCode::from(EXIT_CONFIG));
                };
                return mcp::stdio::run(url, &config.server);
            }
            // A private gateway on a free loopback port; its logs go to stderr.
            let overrides = CliOverrides {
                host: Some("127.0.0.1".to_owned()),
                port: Some(0),
                ..CliOverrides::default()
            };
            let Some(config) = load_config(cli.config.as_deref(), &overrides) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            telemetry::init(&config.log);
            mcp_embedded(config)
        }
        Some(Command::Demo(args)) => {
            let overrides = args.over(&cli.serve).overrides();
            let Some(config) = load_config(cli.config.as_deref(), &overrides) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            telemetry::init(&config.log);
            actix_rt::System::new().block_on(demo::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `exai mcp --embedded`: starts the gateway from `config` on its own thread (the caller
/// chose a free loopback port), bridges stdio to it, and shuts it down when stdin ends.
fn mcp_embedded(config: Config) -> anyhow::Result<std::process::ExitCode> {
    use secrecy::ExposeSecret as _;
    let token = config
        .server
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    let (tx, rx) = std::sync::mpsc::channel();
    let gateway = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let app = match app::Application::build(config).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok((app.addr(), app.shutdown_trigger())));
            app.run_until_stopped().await
        })
    });
    let (addr, trigger) = match rx.recv() {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => anyhow::bail!("the embedded gateway did not start: {e}"),
        Err(_) => anyhow::bail!("the embedded gateway did not start"),
    };
    let code = mcp::stdio::run_to(format!("http://{addr}/mcp"), token);
    trigger.trigger();
    match gateway.join() {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the embedded gateway's thread panicked"),
    }
    code
}

/// Applies the embedded migrations to the configured database.
fn migrate(config: &Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use secrecy::ExposeSecret as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = exai_actors::pipeline::store::open_store(config.database_url.expose_secret())
            .context("EXAI_DATABASE_URL")?;
        store.migrate().await.context("applying migrations")?;
        println!("migrations applied ({})", store.backend());
        Ok(())
    })
}

/// Loads and validates configuration, printing every problem on its own line.
fn load_config(file: Option<&std::path::Path>, cli: &CliOverrides) -> Option<Config> {
    match Config::load(file, cli) {
        Ok(config) => Some(config),
        Err(errors) => {
            for e in &errors {
                eprintln!("config error: {e}");
            }
            eprintln!(
                "exai: {} configuration problem(s); not starting",
                errors.len()
            );
            None
        }
    }
}

fn serve(file: Option<&std::path::Path>, cli: &CliOverrides) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(file, cli) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    telemetry::init(&config.log);
    actix_rt::System::new().block_on(async move {
        let app = app::Application::build(config).await?;
        app.run_until_stopped().await
    })?;
    Ok(ExitCode::SUCCESS)
}
