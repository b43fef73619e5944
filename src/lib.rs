//! exai: a gateway daemon for AI model providers.
//!
//! This crate is the HTTP and WebSocket layer, configuration, start-up and the CLI; the
//! actors live in `exai-actors`.

pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod routes;
pub mod startup;
pub mod telemetry;

use std::process::ExitCode;

use cli::{Cli, Command};
use config::{CliOverrides, Config};

/// Exit status for configuration problems.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve(cli.config.as_deref(), &cli.serve.overrides()),
        Some(Command::Serve(args)) => serve(cli.config.as_deref(), &args.overrides()),
        Some(Command::CheckConfig(args)) => {
            let Some(config) = load_config(cli.config.as_deref(), &args.overrides()) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Migrate) => {
            let Some(_config) = load_config(cli.config.as_deref(), &CliOverrides::default()) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            anyhow::bail!("migrate: not available yet")
        }
        Some(Command::MockUpstream { .. }) => anyhow::bail!("mock-upstream: not available yet"),
        Some(Command::Demo(_)) => anyhow::bail!("demo: not available yet"),
    }
}

/// Loads and validates configuration, printing every problem on its own line.
fn load_config(file: Option<&std::path::Path>, cli: &CliOverrides) -> Option<Config> {
    match Config::load(file, cli) {
        Ok(config) => Some(config),
        Err(errors) => {
            for e in &errors {
                eprintln!("config error: {e}");
            }
            eprintln!("exai: {} configuration problem(s); not starting", errors.len());
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
        let app = startup::Application::build(config).await?;
        app.run_until_stopped().await
    })?;
    Ok(ExitCode::SUCCESS)
}
