# Sourced by the benchmark scripts (from the repository root): the build to run, a work
# directory removed on exit together with the keyward, nginx (and EXTRA_PIDS) a script started,
# free ports.
# KEYWARD_BIN=path runs that build instead of building one (to compare two builds, alternate
# runs of each).
if [ -n "${KEYWARD_BIN:-}" ]; then
  BIN=$KEYWARD_BIN
else
  cargo build --release --quiet
  BIN=$PWD/target/release/keyward
fi
WORK=$(mktemp -d)
cleanup() {
  [ -n "${KEYWARD_PID:-}" ] && kill "$KEYWARD_PID" 2>/dev/null || true
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null || true
  for pid in ${REPLICA_PIDS:-} ${EXTRA_PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # a stopped run cleans up too
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
