#!/usr/bin/env bash
# Server instructions per call of health, Verify and Envoy's Check, counted by valgrind's
# callgrind (repeatable whatever else the machine does): for each phase the server runs twice
# under callgrind, answering 2000 and then 6000 calls (h2load, 1 connection × 8 streams, the
# bodies of benches/bodies.py), and the difference of the two totals over 4000 is one call's
# cost, start-up and shutdown cancelling out. ALLOCATIONS=1 counts heap allocations and their
# bytes per call the same way, with valgrind's DHAT.
#
#   benches/instructions.sh            KEYWARD_BIN=path benches/instructions.sh
#   ALLOCATIONS=1 benches/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)"; exit 1; }
. benches/common.sh
GRPC=$(free_port); HTTP=$(free_port)
cat > "$WORK/keyward.toml" <<TOML
listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
database_url = "sqlite://$WORK/keyward.db"
root_key_file = "$WORK/root-key"
rate_limit = 4000000000
rate_limit_window = "1s"
TOML
up() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the server did not start"; exit 1
}
RUST_LOG=warn "$BIN" serve --config "$WORK/keyward.toml" >/dev/null 2>"$WORK/keyward.log" &
KEYWARD_PID=$!
up
export KEYWARD_KEY=$(cat "$WORK/root-key") KEYWARD_SERVER="http://127.0.0.1:$GRPC"
KEY=$("$BIN" keys create --account bench --name callgrind --scope videos:read 2>/dev/null)
kill "$KEYWARD_PID"; wait "$KEYWARD_PID" || true; KEYWARD_PID=
python3 benches/bodies.py "$WORK" "$KEY"
declare -A PATHS=(
  [verify]=/keyward.v1.VerifyService/Verify
  [check]=/envoy.service.auth.v3.Authorization/Check
  [health]=/grpc.health.v1.Health/Check
)
if [ -n "${ALLOCATIONS:-}" ]; then
  TOOL=(--tool=dhat --dhat-out-file="$WORK/cg.out")
else
  TOOL=(--tool=callgrind --callgrind-out-file="$WORK/cg.out")
fi
total() {  # phase calls → the server's instructions (or "allocations bytes")
  RUST_LOG=warn valgrind "${TOOL[@]}" \
    "$BIN" serve --config "$WORK/keyward.toml" >/dev/null 2>"$WORK/valgrind.log" &
  KEYWARD_PID=$!
  up
  h2load -n "$2" -c 1 -m 8 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/$1.bin" "http://127.0.0.1:$GRPC${PATHS[$1]}" >/dev/null 2>&1
  kill -TERM "$KEYWARD_PID"; wait "$KEYWARD_PID" || true; KEYWARD_PID=
  if [ -n "${ALLOCATIONS:-}" ]; then
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(sum(p["tbk"] for p in d["pps"]), sum(p["tb"] for p in d["pps"]))' "$WORK/cg.out"
  else
    awk '/^summary:/ {print $2}' "$WORK/cg.out"
  fi
}
for phase in health verify check; do
  read -r low low_bytes < <(total "$phase" 2000)
  read -r high high_bytes < <(total "$phase" 6000)
  if [ -n "${ALLOCATIONS:-}" ]; then
    echo "$phase: $(( (high - low) / 4000 )) allocations, $(( (high_bytes - low_bytes) / 4000 )) bytes per call"
  else
    echo "$phase: $(( (high - low) / 4000 )) instructions per call"
  fi
done
