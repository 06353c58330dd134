#!/usr/bin/env bash
# make bench: every measurement of BENCHMARKS.md in one run, against one
# private nginx serving a fixed subscription (bench/nginx.sh) and the emulator.
#   BENCH_N      requests per throughput sample (default 20000)
#   BENCH_REPS   samples per measurement; the best one counts (default 5)
#   BENCH_QUICK  1: smaller N, one sample, no callgrind (a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
N=${BENCH_N:-20000}
REPS=${BENCH_REPS:-5}
CG_N=${BENCH_CG_N:-1000}
if [ "${BENCH_QUICK:-0}" = 1 ]; then N=2000; REPS=1; fi
out=build/bench
mkdir -p "$out"
results=$out/results.txt
: >"$results"
echo "run_date $(date -u '+%Y-%m-%d %H:%M UTC')" >>"$results"
echo "load_at_start $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results"

cc -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Wpedantic -o "$out/curl_loop" bench/curl_loop.c -lcurl
cc -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Wpedantic -o "$out/curl_multi" bench/curl_multi.c -lcurl

prefix=$(mktemp -d "${TMPDIR:-/tmp}/moltflow-bench.XXXXXX")
emu_prefix=$prefix/emulator
mkdir -m 700 "$emu_prefix" # the launcher refuses a prefix others can read
cleanup() {
  bench/nginx.sh stop "$prefix" || true
  bin/moltflow-emulator --stop --prefix "$emu_prefix" --quiet || true
  rm -rf "$prefix"
}
trap cleanup EXIT
base=$(bench/nginx.sh start "$prefix")
emu=$(bin/moltflow-emulator --daemon --port 0 --prefix "$emu_prefix" --no-rate-limit --quiet)
url=$base/billing/subscription
KEY=mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO
# The C loops send the request the SDK sends: same headers, same User-Agent.
UA=$(LUA_PATH='lua/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 -e '
  local admin = require "moltflow.admin"
  local c = admin.new{base_url = "http://127.0.0.1:1", api_key = "k"}
  io.write(c:info().user_agent)')

export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
lua54() { LUA_CPATH="$root/build/5.4/?.so;;" lua5.4 "$@"; }
luajit_() { LUA_CPATH="$root/build/luajit/?.so;;" luajit "$@"; }

record() { echo "$1 $2" >>"$results"; printf '  %-28s %s\n' "$1" "$2" >&2; }
# best KEY CMD...: the highest rate of REPS samples (and the lowest CPU time
# per request, when the command reports one)
best() {
  local key=$1; shift
  local b=0 cpu="" sample v c
  for _ in $(seq "$REPS"); do
    sample=$("$@") # a failing sample stops the run (set -e)
    v=$(awk '/^rps /{print $2}' <<<"$sample")
    c=$(awk '/^cpu_us /{print $2}' <<<"$sample")
    [ -n "$v" ] || { echo "bench: no rate from: $*" >&2; exit 1; }
    b=$(awk -v a="$b" -v x="$v" 'BEGIN{print (x > a) ? x : a}')
    [ -n "$c" ] && cpu=$(awk -v a="${cpu:-1e30}" -v x="$c" 'BEGIN{print (x < a) ? x : a}')
  done
  record "$key" "$b"
  if [ -n "$cpu" ]; then record "${key}_cpu" "$cpu"; fi
}

echo "sequential, one kept-alive connection ($N requests, best of $REPS):" >&2
wrk_rps() {
  wrk -t1 -c1 -d"${BENCH_WRK_SECONDS:-3}s" -H "X-API-Key: $KEY" -H "Accept: application/json" "$url" |
    awk '/^Requests\/sec:/{print "rps", $2}'
}
best seq_wrk wrk_rps
for round in 1 2; do # interleaved, so that a noisy moment hits both sides
  best "seq_c_$round" "$out/curl_loop" "$url" "$N" "$KEY" "$UA"
  best "seq_sdk54_$round" lua54 bench/sdk.lua seq "$base" "$N"
  best "seq_sdkjit_$round" luajit_ bench/sdk.lua seq "$base" "$N"
done
best seq_luasocket lua5.4 bench/luasocket.lua "$url" $((N / 4))
if /usr/bin/python3 -c 'import requests' 2>/dev/null; then
  best seq_python /usr/bin/python3 bench/requests_loop.py "$url" $((N / 10))
fi
best emu_c "$out/curl_loop" "$emu/billing/subscription" $((N / 4)) "$KEY" "$UA"
best emu_sdk54 lua54 bench/sdk.lua seq "$emu" $((N / 4))

echo "concurrency ($N requests, best of $REPS):" >&2
for c in 1 4 16 64; do
  best "multi_c_$c" "$out/curl_multi" "$url" "$N" "$c" "$KEY" "$UA"
  best "batch_sdk54_$c" lua54 bench/sdk.lua batch "$base" "$N" "$c"
  best "batch_sdkjit_$c" luajit_ bench/sdk.lua batch "$base" "$N" "$c"
  best "core_sdk54_$c" lua54 bench/sdk.lua core "$base" "$N" "$c"
done

echo "memory:" >&2
lua54 bench/sdk.lua rss "$base" | while read -r k v; do record "${k}_54" "$v"; done
luajit_ bench/sdk.lua rss "$base" | while read -r k v; do record "${k}_jit" "$v"; done

echo "start-up:" >&2
startup() { # median of 15 fresh processes
  for _ in $(seq 15); do "$@" -e 'local t = os.clock(); require "moltflow.admin"; print(os.clock() - t)'; done |
    sort -n | awk '{a[NR]=$1} END{printf "%.2f\n", a[int((NR+1)/2)] * 1000}'
}
record startup_ms_54 "$(LUA_CPATH="$root/build/5.4/?.so;;" startup lua5.4)"
record startup_ms_jit "$(LUA_CPATH="$root/build/luajit/?.so;;" startup luajit)"

if [ "${BENCH_QUICK:-0}" != 1 ]; then
  echo "instructions per request (callgrind, (2N - N) / N, N = $CG_N):" >&2
  refs() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
             awk '/refs:/{gsub(",", "", $4); print $4}'; }
  a=$(refs "$out/curl_loop" "$url" "$CG_N" "$KEY" "$UA")
  b=$(refs "$out/curl_loop" "$url" $((2 * CG_N)) "$KEY" "$UA")
  record ir_c $(((b - a) / CG_N))
  a=$(refs "$out/curl_multi" "$url" "$CG_N" 16 "$KEY" "$UA")
  b=$(refs "$out/curl_multi" "$url" $((2 * CG_N)) 16 "$KEY" "$UA")
  record ir_multi16 $(((b - a) / CG_N))
  a=$(LUA_CPATH="$root/build/5.4/?.so;;" refs lua5.4 bench/sdk.lua batch "$base" "$CG_N" 16)
  b=$(LUA_CPATH="$root/build/5.4/?.so;;" refs lua5.4 bench/sdk.lua batch "$base" $((2 * CG_N)) 16)
  record ir_batch16_54 $(((b - a) / CG_N))
  for host in 5.4:lua5.4:54 luajit:luajit:jit; do
    IFS=: read -r dir lua name <<<"$host"
    a=$(LUA_CPATH="$root/build/$dir/?.so;;" refs "$lua" bench/sdk.lua calls "$base" "$CG_N")
    b=$(LUA_CPATH="$root/build/$dir/?.so;;" refs "$lua" bench/sdk.lua calls "$base" $((2 * CG_N)))
    record "ir_sdk$name" $(((b - a) / CG_N))
  done
fi

BENCH_N_USED=$N BENCH_REPS_USED=$REPS lua5.4 bench/report.lua "$results"
