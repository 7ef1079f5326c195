#!/usr/bin/env bash
# The scale table (docs/benchmarks.md): for each store size, ROUNDS runs of a fresh PostgreSQL
# database filled by `keyward keys import`, then: the import rate; a restart's time to its
# first answered Verify and to a complete known-digest set; resident memory after it;
# cache-miss latency (10,000 distinct stored keys once each through /auth at 1,000 a second);
# a ListKeys page (100 keys, 20 pages deep) of an account holding a tenth of the keys; and
# offboarding an account holding a hundredth of them. Prints one line a run and the medians.
#
#   bash benches/scale.sh [ROUNDS] [SIZE...]        e.g. bash benches/scale.sh 3 100000 1000000
#
# PostgreSQL: a throwaway cluster (initdb, as the postgres user when run as root) in the work
# directory; the binaries from /usr/lib/postgresql/*/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
ROUNDS=${1:-3}
shift || true
SIZES=${*:-100000 1000000}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(free_port)
AS=""
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; chown postgres "$WORK"; fi
$AS "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust >/dev/null
$AS "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -o "-p $PGPORT -k $WORK" -w start >/dev/null
EXTRA_PIDS=$($AS cat "$WORK/pg/postmaster.pid" | head -1)
PSQL="psql -q -h $WORK -p $PGPORT -U postgres"
GRPC=$(free_port)
HTTP=$(free_port)

start_server() { # DB
  cat > "$WORK/keyward.toml" <<EOT
database_url = "postgres://postgres@127.0.0.1:$PGPORT/$1"
root_key_file = "$WORK/root-$1"
foreign_key_prefixes = ["sk_live_"]
listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
EOT
  "$BIN" serve --config "$WORK/keyward.toml" >>"$WORK/keyward.log" 2>&1 &
  KEYWARD_PID=$!
}
stop_server() { kill "$KEYWARD_PID"; wait "$KEYWARD_PID" 2>/dev/null || true; KEYWARD_PID=; }
now_ms() { date +%s%3N; }
until_ok() { # what, command...
  local what=$1; shift
  for _ in $(seq 6000); do "$@" >/dev/null 2>&1 && return 0; sleep 0.01; done
  echo "timed out waiting for $what" >&2; exit 1
}

for SIZE in $SIZES; do
  BIG=$((SIZE / 10)); OFF=$((SIZE / 100))
  python3 benches/import_file.py "$SIZE" "$WORK/keys.jsonl" --account "big:$BIG" \
    --account "off:$OFF" --secrets "$WORK/miss.keys" 10000
  FIRST=$(head -1 "$WORK/miss.keys")
  for RUN in $(seq "$ROUNDS"); do
    DB=scale_${SIZE}_$RUN
    $PSQL -c "CREATE DATABASE $DB" postgres
    start_server "$DB"
    until_ok "the server" curl -sf "127.0.0.1:$HTTP/readyz"
    export KEYWARD_KEY; KEYWARD_KEY=$(cat "$WORK/root-$DB")
    IMPORT=$("$BIN" keys import "$WORK/keys.jsonl" --restart --output json \
      --server "http://127.0.0.1:$GRPC")
    RATE=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["records_per_second"]))' <<<"$IMPORT")
    echo "size $SIZE run $RUN: imported at $RATE keys/s" >&2
    stop_server
    $PSQL -c "CHECKPOINT" postgres
    # A restart: time to the first answered Verify of a stored key, and to a complete set.
    T0=$(now_ms)
    start_server "$DB"
    until_ok "a Verify" curl -sf "127.0.0.1:$HTTP/auth" -H "Authorization: Bearer $FIRST"
    START_MS=$(( $(now_ms) - T0 ))
    until_ok "the known set" sh -c "curl -sf 127.0.0.1:$HTTP/metrics | grep -q '^keyward_known_keys_loaded 1'"
    LOADED_MS=$(( $(now_ms) - T0 ))
    RSS_MB=$(( $(awk '/VmRSS/ {print $2}' "/proc/$KEYWARD_PID/status") / 1024 ))
    echo "size $SIZE run $RUN: first Verify after $START_MS ms, set loaded after $LOADED_MS ms, RSS $RSS_MB MB" >&2
    MISS=$(python3 benches/miss_latency.py "127.0.0.1:$HTTP" "$WORK/miss.keys" 1000 4)
    MISS_P99=$(sed 's/.*p99_ms \([0-9.]*\).*/\1/' <<<"$MISS")
    # 20 pages of 100 of the big account, each timed; the median.
    TOKEN=""; PAGES=()
    for _ in $(seq 20); do
      OUT=$(curl -s -w '\n%{time_total}' -H "Authorization: Bearer $KEYWARD_KEY" \
        "127.0.0.1:$HTTP/v1/api-keys?accountId=big&pageSize=100&pageToken=$TOKEN")
      PAGES+=("$(tail -1 <<<"$OUT")")
      TOKEN=$(head -1 <<<"$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("nextPageToken",""))')
    done
    PAGE_MS=$(printf '%s\n' "${PAGES[@]}" | python3 -c 'import sys,statistics; print(round(statistics.median(float(l)*1000 for l in sys.stdin), 2))')
    echo "size $SIZE run $RUN: $MISS; page $PAGE_MS ms" >&2
    T0=$(now_ms)
    "$BIN" accounts offboard off --output json --server "http://127.0.0.1:$GRPC" >/dev/null
    REVOKE_MS=$(( $(now_ms) - T0 ))
    stop_server
    $PSQL -c "DROP DATABASE $DB" postgres
    echo "size $SIZE run $RUN import_keys_per_s $RATE start_ms $START_MS loaded_ms $LOADED_MS rss_mb $RSS_MB miss_p99_ms $MISS_P99 page_ms $PAGE_MS offboard_${OFF}_ms $REVOKE_MS | $MISS" | tee -a "$WORK/runs.txt"
  done
done
python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split("|")[0].split()
    d = dict(zip(f[0::2], f[1::2]))
    rows.setdefault(d["size"], []).append(d)
for size, runs in rows.items():
    out = [f"size {size} ({len(runs)} runs):"]
    for k in runs[0]:
        if k in ("size", "run"):
            continue
        v = sorted(float(r[k]) for r in runs)
        out.append(f"{k} {statistics.median(v):g} ({v[0]:g}-{v[-1]:g})")
    print(" ".join(out))
PY
