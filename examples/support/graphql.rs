//! What the load examples share: GraphQL calls to the server under test, and the local
//! server that plays the provider or receiver it calls.

use serde_json::{Value, json};

/// Posts `query` with `variables` (as `token` when given); the operation's `data`, or an error
/// naming the query when the answer has errors.
pub async fn call(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await?.json().await?;
    anyhow::ensure!(body.get("errors").is_none(), "{query}: {body}");
    Ok(body["data"].clone())
}

/// A JSON string's text.
pub fn text(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("expected a string, got {value}"))
}

/// Serves `router` on a free loopback port for as long as the example runs; its base URL.
pub async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base_url)
}
