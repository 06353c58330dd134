#!/usr/bin/env bash
# bench/nginx.sh start PREFIX  -> prints the base URL (http://127.0.0.1:PORT/api/v2)
# bench/nginx.sh stop PREFIX
# A private nginx, no Lua: GET /api/v2/billing/subscription answers a fixed
# JSON file with the emulator's headers, over kept-alive connections that are
# never closed by a request count. Runs as the invoking user from PREFIX.
set -euo pipefail
NGINX=${NGINX:-/usr/sbin/nginx}
here=$(cd "$(dirname "$0")" && pwd)
cmd=$1
prefix=$(cd "$2" && pwd)

if [ "$cmd" = stop ]; then
  [ -f "$prefix/nginx.pid" ] || exit 0
  pid=$(cat "$prefix/nginx.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  exit 0
fi

cp "$here/subscription.json" "$prefix/subscription.json"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
  port=$((20000 + (RANDOM * 32768 + RANDOM) % 41000))
  port_busy "$port" && continue
  cat >"$prefix/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon on;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $prefix/client_body_temp;
    proxy_temp_path $prefix/proxy_temp;
    fastcgi_temp_path $prefix/fastcgi_temp;
    uwsgi_temp_path $prefix/uwsgi_temp;
    scgi_temp_path $prefix/scgi_temp;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    server_tokens off;
    server {
        listen 127.0.0.1:$port;
        location = /api/v2/billing/subscription {
            default_type application/json;
            add_header X-Request-Id req_00000000000000000000beef;
            add_header X-RateLimit-Remaining 39;
            add_header X-RateLimit-Reset 1795886880;
            alias $prefix/subscription.json;
        }
        location / { return 404; }
    }
}
CONF
  if "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" 2>"$prefix/startup.log"; then
    for _ in $(seq 100); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/api/v2/billing/subscription"; then
        echo "http://127.0.0.1:$port/api/v2"
        exit 0
      fi
      sleep 0.05
    done
    break
  fi
  grep -q "Address already in use" "$prefix/startup.log" || break
done
echo "bench/nginx.sh: nginx failed to start; see $prefix" >&2
cat "$prefix/startup.log" "$prefix/error.log" >&2 2>/dev/null || true
exit 1
