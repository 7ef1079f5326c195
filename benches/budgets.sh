#!/usr/bin/env bash
# Rate limits shared through Valkey/Redis against per-replica counters: two keyward servers on
# this machine, one with `rate_limit_store` (a throwaway valkey-server or redis-server, no
# persistence), one without, driven in alternating rounds by `keyward bench` over 1000 keys
# whose limit (1,000,000 a minute) each uses less than half of. Per round and mode: saturated
# Verify throughput and p99, p99 at a fixed 10,000 req/s, and, for the shared mode, the
# engine's commands per Verify in steady state (`INFO commandstats`, the commands its scripts
# run included, over keyward's count of verifications), by difference: a run of one round and
# a run of two rounds over their own fresh keys pay the same ramp (each key's first blocks), so
# the difference is one round of blocks sized to the keys' rate. The summary gives the median
# and min–max of each, the shared/local throughput ratio per round and pooled. DEBUG=1 prints
# each run's raw counts.
#
#   benches/budgets.sh [ROUNDS] [DURATION]      e.g. benches/budgets.sh 5 5s
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
DURATION=${2:-5s}
. benches/common.sh
ENGINE=$(command -v valkey-server || command -v redis-server)
EPORT=$(free_port)
"$ENGINE" --port "$EPORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
EXTRA_PIDS="$!"

start() {  # name [store URL] → starts a server, sets <name>_GRPC, <name>_HTTP, <name>_KEY
  local name=$1 store=${2:-} grpc http
  grpc=$(free_port); http=$(free_port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/keyward.toml" <<TOML
listen = "127.0.0.1:$grpc"
http_listen = "127.0.0.1:$http"
database_url = "sqlite://$WORK/$name/keyward.db"
root_key_file = "$WORK/$name/root-key"
TOML
  [ -n "$store" ] && echo "rate_limit_store = \"$store\"" >> "$WORK/$name/keyward.toml"
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name/keyward.toml" >/dev/null 2>"$WORK/$name/log" &
  EXTRA_PIDS="$EXTRA_PIDS $!"
  for _ in $(seq 100); do [ -s "$WORK/$name/root-key" ] && break; sleep 0.1; done
  printf -v "${name}_GRPC" %s "$grpc"
  printf -v "${name}_HTTP" %s "$http"
  printf -v "${name}_KEY" %s "$(cat "$WORK/$name/root-key")"
}
start shared "redis://127.0.0.1:$EPORT/0"
start local

commands() {  # the engine's commands so far, INFO's own excluded
  python3 - "$EPORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"INFO commandstats\r\n")
data = b""
while b"\r\n" not in data:
    data += s.recv(65536)
head, _, body = data.partition(b"\r\n")
size = int(head[1:])  # a bulk string: $<size>
while len(body) < size:
    body += s.recv(65536)
total = 0
for line in body.decode().splitlines():
    if line.startswith("cmdstat_") and not line.startswith("cmdstat_info:"):
        total += int(line.split("calls=")[1].split(",")[0])
print(total)
PY
}
verifications() {  # http port → verifications the server has answered
  curl -s "http://127.0.0.1:$1/metrics" \
    | awk '/^keyward_verifications_total/ {s += $2} END {printf "%d\n", s}'
}
bench() {  # grpc port, root key, extra flags… → "req/s p99" of the first round's verify phase
  "$BIN" bench --addr "http://127.0.0.1:$1" --root-key "$2" --keys 1000 \
    --key-limit 1000000/1m --duration "$DURATION" --faces verify "${@:3}" 2>/dev/null \
    | awk '/^round 1: verify/ {print $4, $13}'
}
measured() {  # mode, extra bench flags… → "commands verifications req/s p99"
  local grpc_var=${1}_GRPC http_var=${1}_HTTP key_var=${1}_KEY c0 v0 out
  c0=$(commands); v0=$(verifications "${!http_var}")
  out=$(bench "${!grpc_var}" "${!key_var}" "${@:2}")
  echo "$(( $(commands) - c0 )) $(( $(verifications "${!http_var}") - v0 )) $out"
}

declare -A RATE P99 FIXED
CPV=""
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then order="shared local"; else order="local shared"; fi
  for mode in $order; do
    read -r c1 v1 rate p99 < <(measured "$mode")
    read -r c2 v2 _ < <(measured "$mode" --repeat 2)
    read -r _ _ _ fixed < <(measured "$mode" --rate 10000)
    [ -n "${DEBUG:-}" ] && echo "debug $mode: one round $c1 commands / $v1 verifications, two rounds $c2 / $v2" >&2
    RATE[$mode]+="$rate "; P99[$mode]+="$p99 "; FIXED[$mode]+="$fixed "
    if [ "$mode" = shared ]; then
      CPV+="$(python3 -c "print(max(0, $c2 - $c1) / max(1, $v2 - $v1))") "
    fi
    echo "round $round: $mode $rate req/s, p99 $p99 µs; at 10k req/s p99 $fixed µs"
  done
done
python3 - "${RATE[shared]}" "${RATE[local]}" "${P99[shared]}" "${P99[local]}" \
  "${FIXED[shared]}" "${FIXED[local]}" "$CPV" <<'PY'
import statistics, sys
rs, rl, ps, pl, fs, fl, cpv = ([float(x) for x in a.split()] for a in sys.argv[1:8])
def line(name, xs, unit):
    print(f"{name:<34} median {statistics.median(xs):>9.3f} {unit}  ({min(xs):.3f}-{max(xs):.3f})")
print("summary: median (min-max) over", len(rs), "rounds")
line("saturated Verify, shared store", rs, "req/s")
line("saturated Verify, per replica", rl, "req/s")
line("throughput ratio shared/local", [a / b for a, b in zip(rs, rl)], "")
print(f"{'  pooled (all rounds)':<34} {sum(rs) / sum(rl):.3f}")
line("p99 saturated, shared", ps, "µs")
line("p99 saturated, per replica", pl, "µs")
line("p99 at 10k req/s, shared", fs, "µs")
line("p99 at 10k req/s, per replica", fl, "µs")
line("engine commands per Verify, steady", cpv, "")
PY
