//! The `platform` binary: `cargo run --release` serves on the embedded default.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::install_crypto_provider();
    match api::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
