#!/usr/bin/env bash
# Side-by-side benchmark of keyward's gateway faces, in one run of `keyward bench`:
#   verify  keyward.v1.VerifyService/Verify
#   check   envoy.service.auth.v3.Authorization/Check (ext_authz)
#   health  grpc.health.v1.Health/Check — the transport floor
#   http1   keyward's forward-auth endpoint, GET /auth?scopes=videos:read
#   http2   nginx with auth_request (deploy/nginx.conf) in front of an upstream
#   http3   the same nginx proxying the same upstream without auth_request
# Each round runs every phase in turn, starting one phase later than the round before; the
# summary gives the median and min–max over rounds and each gRPC face's pooled ratio to the
# floor with its 95 % interval. Run it on a quiet machine: the client, keyward and nginx share
# its cores. On a busy one, many short rounds say more than a few long ones.
#
#   benches/gateways.sh [ROUNDS] [DURATION]        e.g. benches/gateways.sh 40 500ms
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-5s}
NGINX=${KEYWARD_TEST_NGINX:-/usr/sbin/nginx}

. benches/common.sh
GRPC=$(free_port); HTTP=$(free_port); EDGE=$(free_port); OPEN=$(free_port); API=$(free_port)

# keyward on SQLite in the work dir; nginx on this machine is a trusted proxy.
cat > "$WORK/keyward.toml" <<TOML
listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
database_url = "sqlite://$WORK/keyward.db"
root_key_file = "$WORK/root-key"
log_format = "json"

[gateway]
trusted_proxies = ["127.0.0.1/32"]
TOML
RUST_LOG=warn "$BIN" serve --config "$WORK/keyward.toml" >/dev/null 2>"$WORK/keyward.log" &
KEYWARD_PID=$!
for _ in $(seq 100); do [ -s "$WORK/root-key" ] && break; sleep 0.1; done
ROOT_KEY=$(cat "$WORK/root-key")

# nginx: the shipped configuration, an unprotected server proxying the same upstream, and the
# upstream itself (nginx answering 200).
sed -e "s/127.0.0.1:8080/127.0.0.1:$HTTP/" -e "s/127.0.0.1:9000/127.0.0.1:$API/" \
    -e "s/listen 127.0.0.1:8000/listen 127.0.0.1:$EDGE/" deploy/nginx.conf > "$WORK/site.conf"
cp deploy/keyward-protect.conf "$WORK/"
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat > "$WORK/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
$USER_LINE
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi; uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  include $WORK/site.conf;
  server {
    listen 127.0.0.1:$OPEN;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://api; }
  }
  server {
    listen 127.0.0.1:$API;
    location / { return 200 "ok\n"; }
  }
}
NGINX
"$NGINX" -p "$WORK" -e "$WORK/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
sleep 0.5

"$BIN" bench --addr "http://127.0.0.1:$GRPC" --root-key "$ROOT_KEY" \
  --faces verify,check --keys 1000 --duration "$DURATION" --repeat "$ROUNDS" \
  --http "http://127.0.0.1:$HTTP/auth?scopes=videos:read" \
  --http "http://127.0.0.1:$EDGE/v1/videos/42?page=2" \
  --http "http://127.0.0.1:$OPEN/v1/videos/42?page=2"
