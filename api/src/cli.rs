//! The `platform` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{Application, configuration::Settings, db, telemetry};

#[derive(Parser)]
#[command(name = "platform", version, about = "Multi-tenant GraphQL backend")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL SDL, or write it to a file.
    PrintSchema {
        /// Write here instead of standard output (e.g. `schema.graphql`).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Create demo companies to explore in GraphiQL.
    DemoSeed,
}

/// Parses the arguments and runs the chosen command.
pub async fn run() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::PrintSchema { output } => print_schema(output.as_deref()),
        Command::Serve => {
            let application = Application::build(load_settings()?).await?;
            application.run_until_stopped().await
        }
        Command::Migrate => {
            let connection = db::connect(&load_settings()?).await?;
            db::migrate(&connection).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::DemoSeed => {
            let connection = db::connect(&load_settings()?).await?;
            db::migrate(&connection).await?;
            crate::demo::seed(&connection).await
        }
    }
}

fn load_settings() -> anyhow::Result<Settings> {
    let settings = Settings::load()?;
    telemetry::init(settings.json_logs(), "info,sqlx=warn,sea_orm=warn");
    Ok(settings)
}

fn print_schema(output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let sdl = crate::graphql::sdl();
    match output {
        Some(path) => {
            std::fs::write(path, sdl).with_context(|| format!("Failed to write {}", path.display()))
        }
        None => {
            print!("{sdl}");
            Ok(())
        }
    }
}
