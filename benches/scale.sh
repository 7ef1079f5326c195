#!/usr/bin/env bash
# The scale table (docs/benchmarks.md): for each store size, ROUNDS runs of a fresh PostgreSQL
# database filled by `keyward keys import`, then: the import rate; a restart's time to its
# first answered Verify and to a complete known-digest set; resident memory after it;
# cache-miss latency (10,000 distinct stored keys once each through /auth at 1,000 a second);
# ListKeys pages (100 keys, 20 pages deep) of an account holding a tenth of the keys, alone
# and while keys are created in that account (200 a second); with REPLICAS servers on the
# database (5), a revocation through the first seen by the last (`keyward bench --peer`, 200
# revocations) and offboarding an account holding a hundredth of the keys, with the time
# until every replica refuses the 20 of its keys each had cached. With CACHED=N, in every
# round, then the server's resident memory with N more keys all cached (`keyward bench --keys
# N --server-pid`). Prints one line a run and the medians.
#
#   bash benches/scale.sh [ROUNDS] [SIZE...]        e.g. bash benches/scale.sh 3 100000 1000000
#
# PostgreSQL: a throwaway cluster (initdb, as the postgres user when run as root) in the work
# directory; the binaries from /usr/lib/postgresql/*/bin. PG_SETTINGS="name=value ..." starts
# it with those settings (e.g. PG_SETTINGS="shared_buffers=2GB max_wal_size=8GB"), PostgreSQL's
# defaults otherwise.
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
PGOPTS="-p $PGPORT -k $WORK"
for setting in ${PG_SETTINGS:-}; do PGOPTS+=" -c $setting"; done
$AS "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -o "$PGOPTS" -w start >/dev/null
EXTRA_PIDS=$($AS cat "$WORK/pg/postmaster.pid" | head -1)
PSQL="psql -q -h $WORK -p $PGPORT -U postgres"
REPLICAS=${REPLICAS:-5}
CACHED=${CACHED:-0}
GRPCS=(); HTTPS=()
for _ in $(seq "$REPLICAS"); do GRPCS+=("$(free_port)"); HTTPS+=("$(free_port)"); done
GRPC=${GRPCS[0]}
HTTP=${HTTPS[0]}

start_server() { # DB [REPLICA]: the first replica's process id in KEYWARD_PID, the others' in REPLICA_PIDS
  local n=${2:-0}
  # Limits out of the way: creates go into an account of a tenth of the keys.
  cat > "$WORK/keyward-$n.toml" <<EOT
database_url = "postgres://postgres@127.0.0.1:$PGPORT/$1"
root_key_file = "$WORK/root-$1"
foreign_key_prefixes = ["sk_live_"]
listen = "127.0.0.1:${GRPCS[$n]}"
http_listen = "127.0.0.1:${HTTPS[$n]}"
max_active_keys = 4000000000
EOT
  "$BIN" serve --config "$WORK/keyward-$n.toml" >>"$WORK/keyward-$n.log" 2>&1 &
  if [ "$n" = 0 ]; then KEYWARD_PID=$!; else REPLICA_PIDS="${REPLICA_PIDS:-} $!"; fi
}
stop_server() {
  kill "$KEYWARD_PID" ${REPLICA_PIDS:-}
  wait "$KEYWARD_PID" ${REPLICA_PIDS:-} 2>/dev/null || true
  KEYWARD_PID=; REPLICA_PIDS=
}
now_ms() { date +%s%3N; }
until_ok() { # what, command...
  local what=$1; shift
  for _ in $(seq 6000); do "$@" >/dev/null 2>&1 && return 0; sleep 0.01; done
  echo "timed out waiting for $what" >&2; exit 1
}

for SIZE in $SIZES; do
  BIG=$((SIZE / 10)); OFF=$((SIZE / 100))
  python3 benches/import_file.py "$SIZE" "$WORK/keys.jsonl" --account "big:$BIG" \
    --account "off:$OFF" --secrets "$WORK/miss.keys" 10000 --secrets-of off "$WORK/off.keys" 20
  FIRST=$(head -1 "$WORK/miss.keys")
  for RUN in $(seq "$ROUNDS"); do
    DB=scale_${SIZE}_$RUN
    $PSQL -c "CREATE DATABASE $DB" postgres
    start_server "$DB"
    until_ok "the server" curl -sf "127.0.0.1:$HTTP/readyz"
    # Root key in the environment (KEYWARD_ROOT_KEY for `keyward bench`), never on a command line.
    export KEYWARD_KEY KEYWARD_ROOT_KEY; KEYWARD_KEY=$(cat "$WORK/root-$DB"); KEYWARD_ROOT_KEY=$KEYWARD_KEY
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
    PAGES=$(python3 benches/list_pages.py "127.0.0.1:$HTTP" big 20 200)
    field() { sed -E "s/(^|.* )$1 ([0-9.]+).*/\2/" <<<"$2"; }
    echo "size $SIZE run $RUN: $MISS; $PAGES" >&2
    # The other replicas, each with its known set loaded.
    for n in $(seq 1 $((REPLICAS - 1))); do start_server "$DB" "$n"; done
    for n in $(seq 1 $((REPLICAS - 1))); do
      until_ok "replica $n" sh -c "curl -sf 127.0.0.1:${HTTPS[$n]}/metrics | grep -q '^keyward_known_keys_loaded 1'"
    done
    PEER=$("$BIN" bench --addr "http://127.0.0.1:$GRPC" --peer "http://127.0.0.1:${GRPCS[$((REPLICAS - 1))]}" \
      --rounds 200)
    PEER_P99=$(sed 's/.*p99 \([0-9.]*\) ms.*/\1/' <<<"$PEER")
    echo "size $SIZE run $RUN: $PEER" >&2
    ADDRS=$(printf '127.0.0.1:%s,' "${HTTPS[@]}")
    OFFBOARD=$(python3 benches/offboard_seen.py "${ADDRS%,}" "$WORK/off.keys" -- \
      "$BIN" accounts offboard off --output json --server "http://127.0.0.1:$GRPC")
    echo "size $SIZE run $RUN: $OFFBOARD" >&2
    CACHED_MB=0
    if [ "$CACHED" != 0 ]; then
      MEM=$("$BIN" bench --addr "http://127.0.0.1:$GRPC" --keys "$CACHED" \
        --server-pid "$KEYWARD_PID" --duration 1s 2>&1 | grep -i "resident" | tail -1)
      echo "size $SIZE run $RUN: $MEM" >&2
      CACHED_MB=$(sed 's/.*, \([0-9.]*\) MB with all cached.*/\1/' <<<"$MEM")
    fi
    stop_server
    $PSQL -c "DROP DATABASE $DB" postgres
    echo "size $SIZE run $RUN import_keys_per_s $RATE start_ms $START_MS loaded_ms $LOADED_MS rss_mb $RSS_MB" \
      "miss_p99_ms $MISS_P99 page_ms $(field page_ms "$PAGES") page_max_ms $(field page_max_ms "$PAGES")" \
      "creating_page_ms $(field creating_page_ms "$PAGES") creating_page_p99_ms $(field creating_page_p99_ms "$PAGES")" \
      "creating_page_max_ms $(field creating_page_max_ms "$PAGES") created $(field created "$PAGES")" \
      "revocation_seen_p99_ms $PEER_P99 offboard_${OFF}_ms $(field offboard_ms "$OFFBOARD")" \
      "offboard_refused_after_ms $(field all_refused_after_ms "$OFFBOARD") cached_${CACHED}_rss_mb $CACHED_MB" \
      "| $MISS | $PAGES | $OFFBOARD" | tee -a "$WORK/runs.txt"
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
