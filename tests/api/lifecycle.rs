//! The `platform` binary as an operator runs it: start-up checks and graceful shutdown.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn platform() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_platform"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PLATFORM_LOG_FORMAT", "pretty")
        .env("RUST_LOG", "info");
    command
}

#[test]
fn production_refuses_to_start_without_a_secret() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = platform()
        .env("PLATFORM_ENV", "production")
        .env("PLATFORM_DATA_DIR", data.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/p.db?mode=rwc", data.path().display()),
        )
        .output()
        .expect("the binary runs");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PLATFORM_JWT_SECRET"), "{stderr}");
}

#[test]
fn migrate_creates_the_embedded_database() {
    let data = tempfile::tempdir().expect("temp dir");

    let output = platform()
        .arg("migrate")
        .env("PLATFORM_DATA_DIR", data.path())
        .output()
        .expect("the binary runs");

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(data.path().join("platform.db").exists());
}

/// Starts `platform serve` on a free port and returns it with the port it listens on.
fn serve(data: &std::path::Path) -> (Child, u16) {
    let mut command = platform();
    command.env("PLATFORM_DATA_DIR", data);
    serve_with(command)
}

/// Starts `command` (a `platform()` with its settings) serving on a free port.
pub fn serve_with(mut command: Command) -> (Child, u16) {
    let mut child = command
        .env("PLATFORM_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server logs its address before anything else ends")
            .expect("readable log");
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            break rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .expect("a port number");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let data = tempfile::tempdir().expect("temp dir");
    let (mut child, port) = serve(data.path());
    let body = br#"{"query":"{ apiVersion }"}"#;
    let (head, tail) = body.split_at(10);

    // A slow client: the request is in flight while only half of its body has arrived.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let headers = format!(
        "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(headers.as_bytes()).await.expect("writes");
    stream.write_all(head).await.expect("writes");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream
        .write_all(tail)
        .await
        .expect("the connection is still open");

    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("apiVersion"), "{response}");

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joins")
        .expect("waits");
    assert!(
        status.success(),
        "the server exits cleanly after SIGTERM: {status}"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn demo_seed_fills_three_companies_once_and_their_admins_can_log_in() {
    let data = tempfile::tempdir().expect("temp dir");
    let seed = || {
        platform()
            .arg("demo-seed")
            .env("PLATFORM_DATA_DIR", data.path())
            .env("PLATFORM_DEMO_PASSWORD", "demo password 123")
            .output()
            .expect("the binary runs")
    };

    let first = seed();
    let second = seed();
    let (mut child, port) = serve(data.path());
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/graphql");
    let login: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({ "query": "mutation { login(input: { email: \"admin@demo-bike-shop.example\", password: \"demo password 123\" }) { accessToken } }" }))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    let token = login["data"]["login"]["accessToken"]
        .as_str()
        .expect("token")
        .to_string();
    let orders: serde_json::Value = client
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({ "query": "{ orders { totalCount edges { node { status } } } members { roles } }" }))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    child.kill().ok();
    child.wait().ok();

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let printed = String::from_utf8_lossy(&first.stdout);
    assert!(
        printed.contains("mechanic@demo-bike-shop.example"),
        "{printed}"
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("exists already"));
    assert_eq!(orders["data"]["orders"]["totalCount"], 6, "{orders}");
    let statuses: std::collections::BTreeSet<&str> = orders["data"]["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|edge| edge["node"]["status"].as_str())
        .collect();
    assert!(
        statuses.len() >= 5,
        "orders spread over the flow: {statuses:?}"
    );
    assert_eq!(
        orders["data"]["members"].as_array().map(Vec::len),
        Some(4),
        "one per built-in role: {orders}"
    );
}
