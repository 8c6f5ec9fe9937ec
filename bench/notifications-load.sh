#!/usr/bin/env bash
# Notification delivery: idle sendNotification → provider latency, then the sustained rate at
# which a backlog of WhatsApp notifications reaches a local Evolution-compatible server, spread
# over several companies' numbers (8 unless told) and through one number alone — on SQLite,
# and on PostgreSQL when DATABASE_URL is set.
#
#   bench/notifications-load.sh [notifications] [companies]
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench bench/notifications-load.sh 10000
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-10000}"
COMPANIES="${2:-8}"

cargo build --profile dist --quiet --bin platform --example notifications_load
data=$(mktemp -d)
database_url="${DATABASE_URL:-sqlite://$data/platform.db?mode=rwc}"
port=$((20000 + RANDOM % 20000))
PLATFORM_DATA_DIR="$data" DATABASE_URL="$database_url" PLATFORM_BIND="127.0.0.1:$port" \
  PLATFORM_LOG_FORMAT=json RUST_LOG=warn PLATFORM_API_RATE_LIMIT=1000000000 \
  PLATFORM_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8 target/dist/platform serve >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

echo "database: ${database_url%%\?*}"
target/dist/examples/notifications_load "http://127.0.0.1:$port" "$database_url" "$TOTAL" "$COMPANIES"
