#!/usr/bin/env bash
# Real-time load: 1,000 GraphQL subscriptions and 1,000 Socket.IO clients on one server (SQLite),
# 200 transitions; prints commit→delivery p50/p99, missing deliveries and the server's memory.
#
#   bench/realtime-load.sh [graphql] [socketio] [transitions]
set -euo pipefail
cd "$(dirname "$0")/.."
GRAPHQL="${1:-1000}" SOCKETIO="${2:-1000}" TRANSITIONS="${3:-200}"

ulimit -n 16384
cargo build --profile dist --quiet --bin platform --example realtime_load
data=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
PLATFORM_DATA_DIR="$data" PLATFORM_BIND="127.0.0.1:$port" PLATFORM_LOG_FORMAT=json RUST_LOG=warn \
  PLATFORM_API_RATE_LIMIT=1000000000 target/dist/platform serve >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }
echo "server memory before: $(rss)"
target/dist/examples/realtime_load "http://127.0.0.1:$port" "$GRAPHQL" "$SOCKETIO" "$TRANSITIONS" &
client=$!
# Memory while every connection is open, just before the client reports.
sleep_for=$(( (TRANSITIONS * 25) / 1000 + 4 ))
sleep "$sleep_for"
echo "server memory with all connections open: $(rss)"
wait "$client"
