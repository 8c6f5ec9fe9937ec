//! The `platform` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{Application, configuration::Settings, db, state::AppState, telemetry};

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
    /// Create demo companies (restaurant, bike shop, clinic) with members, catalog and orders.
    DemoSeed {
        /// Also add this many orders to the demo restaurant (batched, for load tests).
        #[arg(long, default_value_t = 0)]
        bulk_orders: u64,
    },
    /// Create (or promote) a platform operator, who manages companies. The password is read
    /// from PLATFORM_OPERATOR_PASSWORD or, when unset, from the first line of standard input.
    CreateOperator {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
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
            let connection = db::connect(&load_settings()?, db::Role::Owner).await?;
            db::migrate(&connection).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateOperator { email, name } => {
            let password = operator_password()?;
            let connection = db::connect(&load_settings()?, db::Role::Owner).await?;
            db::migrate(&connection).await?;
            crate::services::identity::create_operator(&connection, &email, &name, password)
                .await?;
            println!("operator {email} is ready; log in with the operatorLogin mutation");
            Ok(())
        }
        Command::DemoSeed { bulk_orders } => {
            let state = AppState::connect(load_settings()?).await?;
            crate::demo::seed(&state, bulk_orders).await
        }
    }
}

fn operator_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("PLATFORM_OPERATOR_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("Failed to read the operator password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
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
