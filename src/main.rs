//! The `platform` binary: `cargo run --release` serves on the embedded default.

/// A GraphQL response allocates many small values across worker threads; mimalloc handles that
/// pattern far better than the system allocator (measured with `bench/orders-load.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
