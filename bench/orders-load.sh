#!/usr/bin/env bash
# Load benchmark of the front-end order list: "first 50 orders of the company, with customer,
# items with product names, and history", at concurrency 32, on SQLite and on PostgreSQL.
#
#   bench/orders-load.sh                 # both databases, 100,000 orders, 20 s each
#   ORDERS=20000 DURATION=10s bench/orders-load.sh sqlite
#
# Installs oha (cargo install oha --locked) when missing. Prints requests/s, p50 and p99.
set -euo pipefail
cd "$(dirname "$0")/.."

ORDERS="${ORDERS:-100000}"
DURATION="${DURATION:-20s}"
CONCURRENCY="${CONCURRENCY:-32}"
# The server's list pool (PLATFORM_DATABASE_LIST_CONNECTIONS), for the database-alone figure.
LIST_CONNECTIONS="${PLATFORM_DATABASE_LIST_CONNECTIONS:-8}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=(sqlite postgres); fi
PASSWORD="bench password $$"

command -v oha >/dev/null || cargo install oha --locked
command -v jq >/dev/null || { echo "jq is needed (apt-get install -y jq)" >&2; exit 1; }
cargo build --profile dist --quiet --bin platform
BIN="${CARGO_TARGET_DIR:-target}/dist/platform"

QUERY='query Page { orders(first: 50) { edges { node { number status total { amountMinor }
  customer { name } items { quantity product { name } } history { from to at } } } } }'

# CPU time (clock ticks) the given processes have used so far.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}

run() {
  local name=$1 database_url=$2
  local data port pid token
  data=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  local env=(PLATFORM_DATA_DIR="$data" PLATFORM_BIND="127.0.0.1:$port" PLATFORM_LOG_FORMAT=json
             RUST_LOG=warn PLATFORM_DEMO_PASSWORD="$PASSWORD" PLATFORM_API_RATE_LIMIT=1000000000)
  [ -n "$database_url" ] && env+=(DATABASE_URL="$database_url")

  echo "== $name: seeding $ORDERS orders"
  local started=$SECONDS
  env "${env[@]}" "$BIN" demo-seed --bulk-orders "$ORDERS" >/dev/null
  echo "   seeded in $((SECONDS - started)) s"

  env "${env[@]}" "$BIN" serve >"$data/server.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

  token=$(curl -fs "http://127.0.0.1:$port/graphql" -H 'content-type: application/json' \
    -d "{\"query\":\"mutation { login(input: { email: \\\"admin@demo-restaurant.example\\\", password: \\\"$PASSWORD\\\" }) { accessToken } }\"}" \
    | jq -r .data.login.accessToken)
  local body
  body=$(jq -nc --arg q "$QUERY" '{query: $q}')
  # Sanity: the query answers 50 orders.
  curl -fs "http://127.0.0.1:$port/graphql" -H 'content-type: application/json' -H "authorization: Bearer $token" \
    -d "$body" | jq -e '.data.orders.edges | length == 50' >/dev/null

  # Throughput on a shared 2-core machine moves with its neighbours; the CPU each request costs
  # the server and PostgreSQL moves much less, so it is printed too.
  local server_before database_before
  server_before=$(cpu_ticks "$pid"); database_before=$(cpu_ticks $(pgrep -u postgres || true))
  oha --no-tui -z "$DURATION" -c "$CONCURRENCY" -m POST -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d "$body" --output-format json \
    "http://127.0.0.1:$port/graphql" > "$data/oha.json"
  local server_ticks database_ticks
  server_ticks=$(( $(cpu_ticks "$pid") - server_before ))
  database_ticks=$(( $(cpu_ticks $(pgrep -u postgres || true)) - database_before ))
  jq -r --arg name "$name" --argjson server "$server_ticks" --argjson database "$database_ticks" \
    --argjson hz "$(getconf CLK_TCK)" '
    ([.statusCodeDistribution[]] | add) as $requests
    | def per_request(ticks): ticks / $hz * 1000 / $requests * 100 | floor / 100;
    "\($name): \(.summary.requestsPerSec | floor) req/s, p50 \(.latencyPercentiles.p50 * 1000 | . * 10 | floor / 10) ms, p99 \(.latencyPercentiles.p99 * 1000 | . * 10 | floor / 10) ms, success \(.summary.successRate * 100)%; CPU per request: server \(per_request($server)) ms"
      + (if $database > 0 then ", PostgreSQL \(per_request($database)) ms" else "" end)' "$data/oha.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ -n "$database_url" ]; then
    database_alone "${database_url%%\?*}"
    local db=${database_url##*/}
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"${db%%\?*}\" WITH (FORCE)" >/dev/null
  fi
  rm -rf "$data"
}

# The floor any server has on this machine at this moment: pgbench sends the page's five
# statements (orders, customers, items, products, history, with the first page's ids) at the
# same concurrency, and nothing else runs. Machines and neighbours vary; the ratio of the two
# figures says how much of it the server keeps. The second figure sends them as the server
# does: the page, then the other four pipelined in one round trip, over as many connections as
# its list pool holds.
database_alone() {
  local url=$1 company orders customers script pipelined
  command -v pgbench >/dev/null || { echo "   (pgbench not found: no database-alone figure)"; return; }
  company=$(psql "$url" -qAtc "SELECT id FROM companies WHERE slug = 'demo-restaurant'")
  orders=$(psql "$url" -qAtc "SELECT string_agg(quote_literal(id::text), ',') FROM (SELECT id FROM orders
    WHERE company_id = '$company' ORDER BY number DESC LIMIT 50) page")
  customers=$(psql "$url" -qAtc "SELECT string_agg(DISTINCT quote_literal(customer_id::text), ',')
    FROM orders WHERE id IN ($orders)")
  local page="SELECT * FROM orders WHERE company_id = '$company' ORDER BY number DESC LIMIT 51;"
  local details=(
    "SELECT * FROM customers WHERE company_id = '$company' AND id = ANY(ARRAY[$customers]::uuid[]);"
    "SELECT * FROM order_items WHERE company_id = '$company' AND order_id = ANY(ARRAY[$orders]::uuid[]) ORDER BY position;"
    "SELECT * FROM products WHERE company_id = '$company' AND id IN (SELECT product_id FROM order_items
       WHERE company_id = '$company' AND order_id = ANY(ARRAY[$orders]::uuid[]));"
    "SELECT * FROM order_status_history WHERE company_id = '$company' AND order_id = ANY(ARRAY[$orders]::uuid[]) ORDER BY created_at, id;"
  )
  script=$(mktemp); pipelined=$(mktemp)
  printf '%s\n' "$page" "${details[@]}" > "$script"
  { echo "$page"; echo '\startpipeline'; printf '%s\n' "${details[@]}"; echo '\endpipeline'; } > "$pipelined"
  local seconds=${DURATION%s}
  pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -T "$seconds" -f "$script" "$url" 2>/dev/null \
    | awk '/^tps/ { printf "   database alone (pgbench, the page'"'"'s five statements one by one): %d pages/s\n", $3 }'
  pgbench -n -M prepared -c "$LIST_CONNECTIONS" -j 2 -T "$seconds" -f "$pipelined" "$url" 2>/dev/null \
    | awk '/^tps/ { printf "   database alone (pgbench, as the server sends them: 2 round trips, '"$LIST_CONNECTIONS"' connections): %d pages/s\n", $3 }'
  rm -f "$script" "$pipelined"
}

for target in "${TARGETS[@]}"; do
  case "$target" in
    sqlite) run sqlite "" ;;
    postgres)
      db="platform_bench_$$"
      psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$db\"" >/dev/null
      # The database is on this machine: TLS over loopback would only burn CPU on both ends
      # (it cost 15% of the throughput), so the server connects without it.
      run postgres "${PG_ADMIN_URL%/*}/$db?sslmode=disable"
      ;;
    *) echo "unknown target $target (sqlite or postgres)" >&2; exit 2 ;;
  esac
done
