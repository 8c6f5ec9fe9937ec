//! Facts about the server itself.

use async_graphql::Object;

#[derive(Default)]
pub struct SystemQuery;

#[Object]
impl SystemQuery {
    /// The server's version, e.g. `0.1.0`.
    async fn api_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}
