#!/usr/bin/env bash
# What counting usage costs: two keyward servers on this machine, one counting every decision
# per key over time (`usage_counting = true`, the default), one not, each with one key, driven
# by h2load in alternating rounds (on, off, then off, on, …) with the same Verify request
# (one key: every call counts into the same entry, the worst case for the counters' locks).
# Then, on the counting server, `keyward bench` over 1000 keys, a graceful stop (the last
# counts are written), and from the database: statements that wrote counts per verification
# (the server's own metrics), rows written, and bytes per row of the usage table with its two
# indexes (SQLite's dbstat).
#
#   benches/usage.sh [ROUNDS] [SECONDS]      e.g. benches/usage.sh 7 5
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECONDS_PER_PHASE=${2:-5}
. benches/common.sh

start() {  # name counting → starts a server, sets <name>_GRPC, <name>_HTTP, <name>_PID
  local name=$1 counting=$2 grpc http
  grpc=$(free_port); http=$(free_port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/keyward.toml" <<TOML
listen = "127.0.0.1:$grpc"
http_listen = "127.0.0.1:$http"
database_url = "sqlite://$WORK/$name/keyward.db"
root_key_file = "$WORK/$name/root-key"
usage_counting = $counting
# No run reaches this limit: the phases measure allowed requests.
rate_limit = 4000000000
rate_limit_window = "1s"
TOML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name/keyward.toml" >/dev/null 2>"$WORK/$name/log" &
  local pid=$!
  EXTRA_PIDS="${EXTRA_PIDS:-} $pid"
  for _ in $(seq 100); do [ -s "$WORK/$name/root-key" ] && break; sleep 0.1; done
  printf -v "${name}_GRPC" %s "$grpc"
  printf -v "${name}_HTTP" %s "$http"
  printf -v "${name}_PID" %s "$pid"
  local key
  key=$(KEYWARD_KEY=$(cat "$WORK/$name/root-key") KEYWARD_SERVER="http://127.0.0.1:$grpc" \
    "$BIN" keys create --account bench --name h2load --scope videos:read 2>/dev/null)
  mkdir -p "$WORK/$name/bodies"
  python3 benches/bodies.py "$WORK/$name/bodies" "$key"
}
start on true
start off false

run() {  # name → req/s
  local grpc_var=${1}_GRPC
  h2load -c 2 -m 32 -D "$SECONDS_PER_PHASE" --warm-up-time=1 \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/$1/bodies/verify.bin" "http://127.0.0.1:${!grpc_var}/keyward.v1.VerifyService/Verify" \
    2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
ON=""; OFF=""
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then order="on off"; else order="off on"; fi
  for mode in $order; do
    rate=$(run "$mode")
    if [ "$mode" = on ]; then ON+="$rate "; else OFF+="$rate "; fi
    echo "round $round: counting $mode $rate req/s"
  done
done

metric() {  # http port, name → the metric's value (summed over labels)
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"($|\\{)" {s += $2} END {printf "%d\n", s}'
}
# 1000 keys for 5 s on the counting server, then a graceful stop writes what is left.
"$BIN" bench --addr "http://127.0.0.1:$on_GRPC" --root-key "$(cat "$WORK/on/root-key")" \
  --keys 1000 --duration 5s --faces verify >/dev/null 2>&1
VERIFIED=$(metric "$on_HTTP" keyward_verifications_total)
STATEMENTS=$(metric "$on_HTTP" keyward_usage_statements_total)
kill -TERM "$on_PID"; wait "$on_PID" 2>/dev/null || true
python3 - "$ON" "$OFF" "$VERIFIED" "$WORK/on/keyward.db" "$STATEMENTS" <<'PY'
import sqlite3, statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
r = [a / b for a, b in zip(on, off)]
print(f"summary over {len(on)} rounds: median (min-max)")
print(f"counting on   {statistics.median(on):>9.0f} req/s ({min(on):.0f}-{max(on):.0f})")
print(f"counting off  {statistics.median(off):>9.0f} req/s ({min(off):.0f}-{max(off):.0f})")
print(f"on/off ratio: median {statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f}), "
      f"pooled {sum(on) / sum(off):.3f}, {sum(x >= 0.95 for x in r)} of {len(r)} rounds >= 0.95")
db = sqlite3.connect(sys.argv[4])
rows = db.execute("SELECT COUNT(*) FROM key_usage").fetchone()[0]
by_span = dict(db.execute("SELECT span, COUNT(*) FROM key_usage GROUP BY span"))
decisions = db.execute("SELECT SUM(count) FROM key_usage WHERE span = 1").fetchone()[0] or 0
size = db.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                  "('key_usage', 'key_usage_by_account', 'key_usage_by_age')").fetchone()[0]
per_row = size / max(rows, 1)
verified, statements = int(sys.argv[3]), int(sys.argv[5])
print(f"decisions counted in the database {decisions} (the server answered {verified} before its stop)")
print(f"statements that wrote counts before the stop: {statements}, "
      f"{statements / max(verified, 1):.6f} per verification")
print(f"rows {rows} (minute {by_span.get(1, 0)}, hour {by_span.get(2, 0)}, day {by_span.get(3, 0)}),"
      f" {size} bytes with indexes: {per_row:.0f} bytes a row")
for what, n in [("used every minute", 1440 + 24 + 1), ("used every hour", 24 + 24 + 1),
                ("used once", 3)]:
    print(f"a key {what} of a day, one outcome: {n} rows, {n * per_row / 1024:.1f} KiB")
PY
