#!/usr/bin/env bash
# Verify, Envoy's Check and the health Check floor under h2load (nghttp2's C load generator,
# Debian package nghttp2-client), with gRPC requests framed by hand: `content-type:
# application/grpc`, `te: trailers`, a 5-byte gRPC prefix and the encoded message. Rounds
# alternate verify, basic view, padded (Verify with 300 bytes of an unknown field, which the
# server skips in one step: what a larger request costs by its size alone), check, health, each
# round starting one phase later; the summary gives the median and min–max of each and of the
# ratios to health in the same round, the pooled ratio (all rounds' requests over all rounds'
# health requests) with its 95 % interval (a bootstrap over the rounds, from 5 rounds on) and
# how many rounds reached 0.9, then padded/verify and check/padded. On a
# 2-core machine a phase's rate varies by ±10 % from one h2load run to the next (each run makes
# new connections), so many short rounds say more than a few long ones. The gRPC codes the
# server answered are read from its metrics afterwards (h2load counts HTTP 200, and gRPC puts
# its status in trailers).
#
#   benches/h2load.sh [ROUNDS] [SECONDS]      e.g. benches/h2load.sh 15 4
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECONDS_PER_PHASE=${2:-10}
. benches/common.sh
GRPC=$(free_port); HTTP=$(free_port)
cat > "$WORK/keyward.toml" <<TOML
listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
database_url = "sqlite://$WORK/keyward.db"
root_key_file = "$WORK/root-key"
# No run reaches this limit: the phases measure allowed requests.
rate_limit = 4000000000
rate_limit_window = "1s"
TOML
RUST_LOG=warn "$BIN" serve --config "$WORK/keyward.toml" >/dev/null 2>"$WORK/keyward.log" &
KEYWARD_PID=$!
for _ in $(seq 100); do [ -s "$WORK/root-key" ] && break; sleep 0.1; done
export KEYWARD_KEY=$(cat "$WORK/root-key") KEYWARD_SERVER="http://127.0.0.1:$GRPC"
KEY=$("$BIN" keys create --account bench --name h2load --scope videos:read 2>/dev/null)
python3 benches/bodies.py "$WORK" "$KEY"
declare -A PATHS=(
  [verify]=/keyward.v1.VerifyService/Verify
  [basic]=/keyward.v1.VerifyService/Verify
  [padded]=/keyward.v1.VerifyService/Verify
  [check]=/envoy.service.auth.v3.Authorization/Check
  [health]=/grpc.health.v1.Health/Check
)
run() {  # phase → req/s
  h2load -c 2 -m 32 -D "$SECONDS_PER_PHASE" --warm-up-time=1 \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/$1.bin" "http://127.0.0.1:$GRPC${PATHS[$1]}" 2>/dev/null \
    | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
declare -A RESULTS
PHASES=(verify basic padded check health)
for round in $(seq "$ROUNDS"); do
  # Each round starts one phase later than the one before: no phase always runs first or last.
  for k in "${!PHASES[@]}"; do
    phase=${PHASES[$(( (round - 1 + k) % ${#PHASES[@]} ))]}
    rate=$(run "$phase")
    RESULTS[$phase]+="$rate "
    echo "round $round: $phase $rate req/s"
  done
done
python3 - "${RESULTS[verify]}" "${RESULTS[basic]}" "${RESULTS[padded]}" "${RESULTS[check]}" "${RESULTS[health]}" <<'PY'
import random, statistics, sys
names = ["verify", "basic", "padded", "check", "health"]
rates = dict(zip(names, ([float(x) for x in a.split()] for a in sys.argv[1:6])))
def line(name, xs):
    print(f"{name:<8} median {statistics.median(xs):>9.0f} req/s  ({min(xs):.0f}-{max(xs):.0f})")
print("summary: median (min-max) over", len(rates["health"]), "rounds")
for name in names:
    line(name, rates[name])
def interval(a, b):
    # 95 % percentile bootstrap of the pooled ratio: rounds drawn with replacement (seeded).
    if len(a) < 5:
        return ""
    rng, n = random.Random(0x6b6579776172), len(a)
    draws = sorted(
        sum(a[i] for i in idx) / sum(b[i] for i in idx)
        for idx in ([rng.randrange(n) for _ in range(n)] for _ in range(2000)))
    return f" (95 % {draws[50]:.3f}-{draws[1949]:.3f})"
def ratio(name, base, target=None):
    r = [a / b for a, b in zip(rates[name], rates[base])]
    pooled = sum(rates[name]) / sum(rates[base])
    reached = f", {sum(x >= target for x in r)} of {len(r)} rounds >= {target}" if target else ""
    print(f"{name}/{base} ratio: median {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f}),"
          f" pooled {pooled:.3f}{interval(rates[name], rates[base])}{reached}")
for name in ["verify", "basic", "padded", "check"]:
    ratio(name, "health", 0.9)
ratio("padded", "verify")  # the cost of 300 more request bytes alone
ratio("check", "padded")   # Check against a Verify request of about its size
PY
echo "what the server answered (its metrics; Unknown = streams h2load cut at the deadline):"
curl -s "http://127.0.0.1:$HTTP/metrics" \
  | grep -E '^grpc_server_handled_total.*(Verify|Check)"|^keyward_verifications_total' \
  | grep -v ' 0$' || true
