#!/usr/bin/env bash
# Compares ringload with wrk (closed loop) and with oha (open loop) against one nginx.
#
#   loadgen/scripts/compare.sh [closed|open|all]
#
# closed: nginx (one worker on CPU 0, a 16-byte body) on 127.0.0.1; `wrk -t1 -c64` and
#         `ringload -w 1 -c 64` alternately on CPU 1, ROUNDS rounds of DURATION each; prints each
#         round and the medians.
# open:   ringload's closed-loop saturation rate S, then at S/2: `ringload --rate` and
#         `oha -q` (both -c 64, on CPU 1), ROUNDS rounds alternately; prints achieved rate and p99.
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (64), PORT (18099), RINGLOAD (the release
# binary; built if missing), OHA (oha on PATH or ~/.local/bin/oha), LOAD_CPU (1), ORIGIN_CPU (0).
set -euo pipefail

MODE=${1:-all}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PORT=${PORT:-18099}
LOAD_CPU=${LOAD_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RINGLOAD=${RINGLOAD:-$ROOT/target/release/ringload}
OHA=${OHA:-$(command -v oha || echo "$HOME/.local/bin/oha")}
URL="http://127.0.0.1:$PORT/"

WORK=$(mktemp -d /tmp/ringload-compare.XXXXXX)
NGINX_PID=""
cleanup() {
    set +e
    if [ -n "$NGINX_PID" ]; then
        kill "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v nginx >/dev/null || { echo "compare.sh: nginx is not installed (apt-get install -y nginx-light)" >&2; exit 2; }
if [ ! -x "$RINGLOAD" ]; then
    (cd "$ROOT" && cargo build --release -p ringway-loadgen)
fi

affinity=$(echo "obase=2; $((1 << ORIGIN_CPU))" | bc)
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $affinity;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location / { return 200 "0123456789abcdef"; }
    }
}
EOF
nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 50); do
    curl -sf "$URL" >/dev/null 2>&1 && break
    sleep 0.1
done
[ "$(curl -s "$URL")" = "0123456789abcdef" ] || { echo "compare.sh: nginx did not come up" >&2; exit 1; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

wrk_rps() {
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "$URL" | awk '/^Requests\/sec:/ {print $2}'
}
ringload_rps() {
    taskset -c "$LOAD_CPU" "$RINGLOAD" -w 1 -c "$CONNS" -d "$DURATION" --json "$WORK/r.json" "$URL" >/dev/null
    json "$WORK/r.json" 'd["rps"]'
}

closed() {
    echo "== closed loop: wrk -t1 -c$CONNS vs ringload -w 1 -c $CONNS, $DURATION, $ROUNDS rounds"
    : >"$WORK/wrk"; : >"$WORK/ringload"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            w=$(wrk_rps); r=$(ringload_rps)
        else
            r=$(ringload_rps); w=$(wrk_rps)
        fi
        echo "$w" >>"$WORK/wrk"; echo "$r" >>"$WORK/ringload"
        printf 'round %d: wrk %.0f req/s, ringload %.0f req/s\n' "$round" "$w" "$r"
    done
    W=$(median <"$WORK/wrk"); R=$(median <"$WORK/ringload")
    printf 'median:  wrk %.0f req/s, ringload %.0f req/s, ratio %.3f\n' "$W" "$R" "$(echo "$R / $W" | bc -l)"
    SATURATION=$R
}

open_loop() {
    [ -n "${SATURATION:-}" ] || SATURATION=$(ringload_rps)
    RATE=$(printf '%.0f' "$(echo "$SATURATION / 2" | bc -l)")
    echo "== open loop at $RATE req/s (half of $SATURATION): ringload --rate vs oha -q, $DURATION, $ROUNDS rounds"
    for round in $(seq "$ROUNDS"); do
        taskset -c "$LOAD_CPU" "$RINGLOAD" -w 1 -c "$CONNS" -d "$DURATION" --rate "$RATE" \
            --json "$WORK/o.json" "$URL" >/dev/null
        taskset -c "$LOAD_CPU" "$OHA" --no-tui -z "$DURATION" -c "$CONNS" -q "$RATE" \
            --output-format json -o "$WORK/oha.json" "$URL" >/dev/null
        json "$WORK/o.json" '"round %d: ringload achieved %.1f (%+.2f %%), p99 %d us" % ('"$round"', d["rps"], (d["rps"]/d["target_rps"]-1)*100, d["latency_us"]["p99"])'
        json "$WORK/oha.json" '"         oha      achieved %.1f, p99 %d us" % (d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"]*1e6)'
    done
}

case "$MODE" in
    closed) closed ;;
    open) open_loop ;;
    all) closed; open_loop ;;
    *) echo "usage: compare.sh [closed|open|all]" >&2; exit 2 ;;
esac
