#!/usr/bin/env bash
# Compares ringload with wrk (closed loop) and with oha (open loop) against one origin.
#
#   loadgen/scripts/compare.sh [closed|open|stall|all]
#
# The origin is nginx (one worker on ORIGIN_CPU, a 16-byte body) or, with ORIGIN=ringway, Ringway
# answering by itself (return_response, one worker): the latter needs only our own binaries.
#
# closed: `wrk -t1 -c64` and `ringload -w 1 -c 64` alternately on LOAD_CPU, ROUNDS rounds of
#         DURATION each; prints each round and the medians.
# open:   ringload's closed-loop saturation rate S (from `closed`, or measured), then for each
#         rate of RATES ("half" is S/2): `ringload --rate`, `oha -q` and
#         `oha -q --latency-correction` (all -c 64 on LOAD_CPU) in turn, ROUNDS rounds; prints
#         the achieved rate and p50/p99 of each run, then the median p99s and their ratios.
#
# stall:  at STALL_RATE, each tool in turn for DURATION while the origin is stopped (SIGSTOP) for
#         STALL after the first 3 s (DURATION at least STALL + 5 s): the coordinated-omission
#         check. Requests due during the
#         stall wait for it, so a tool that measures from the intended send time reports
#         p99 ~ STALL * (1 - 0.01 * DURATION / STALL); one that measures from the actual send
#         (plain `oha -q`) reports far less.
#
# oha paces on tokio's millisecond timer, so it sends each millisecond's requests together:
# at R req/s a burst of R/1000 requests reaches a one-worker origin at once and the burst's
# queueing is part of oha's latency. ringload spaces requests to within 50 us. The two measure
# the same arrivals only where the bursts are small (a few requests): see docs/loadgen.md.
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (64), PORT (18099), RATES ("5000 half"),
# STALL (1, seconds), STALL_RATE (5000),
# ORIGIN (nginx | ringway), RINGLOAD and RINGWAY (the release binaries; built if missing), OHA
# (oha on PATH or ~/.local/bin/oha), LOAD_CPU (1), ORIGIN_CPU (0), WRK (wrk).
set -euo pipefail

MODE=${1:-all}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PORT=${PORT:-18099}
RATES=${RATES:-5000 half}
STALL=${STALL:-1}
STALL_RATE=${STALL_RATE:-5000}
ORIGIN=${ORIGIN:-nginx}
LOAD_CPU=${LOAD_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RINGLOAD=${RINGLOAD:-$ROOT/target/release/ringload}
RINGWAY=${RINGWAY:-$ROOT/target/release/ringway}
OHA=${OHA:-$(command -v oha || echo "$HOME/.local/bin/oha")}
WRK=${WRK:-wrk}
URL="http://127.0.0.1:$PORT/"
BODY=0123456789abcdef

WORK=$(mktemp -d /tmp/ringload-compare.XXXXXX)
ORIGIN_PID=""
cleanup() {
    set +e
    if [ -n "$ORIGIN_PID" ]; then
        kill "$ORIGIN_PID" 2>/dev/null
        wait "$ORIGIN_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "compare.sh: $*" >&2; exit 2; }

case "$MODE" in closed|open|stall|all) ;; *) echo "usage: compare.sh [closed|open|stall|all]" >&2; exit 2 ;; esac
if [ "$MODE" = closed ] || [ "$MODE" = all ]; then
    command -v "$WRK" >/dev/null || fail "wrk is not installed (apt-get install -y wrk)"
fi
if [ "$MODE" != closed ]; then
    [ -x "$OHA" ] || command -v "$OHA" >/dev/null || fail "oha is not installed (cargo install oha)"
fi
if [ ! -x "$RINGLOAD" ] || { [ "$ORIGIN" = ringway ] && [ ! -x "$RINGWAY" ]; }; then
    (cd "$ROOT" && cargo build --release -p ringway -p ringway-loadgen)
fi

# Something else answering on the port would be measured instead of our origin.
if "$RINGLOAD" -n 1 -c 1 --timeout 1s "$URL" >/dev/null 2>&1; then
    fail "something already answers on $URL: stop it or set PORT"
fi

case "$ORIGIN" in
nginx)
    command -v nginx >/dev/null || fail "nginx is not installed (apt-get install -y nginx-light, or ORIGIN=ringway)"
    mask=""; n=$((1 << ORIGIN_CPU))
    while [ "$n" -gt 0 ]; do mask="$((n % 2))$mask"; n=$((n / 2)); done
    cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity $mask;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location / { return 200 "$BODY"; }
    }
}
CONF
    nginx -p "$WORK" -c "$WORK/nginx.conf" &
    ORIGIN_PID=$!
    ;;
ringway)
    cat >"$WORK/origin.yaml" <<CONF
workers: 1
cpus: "$ORIGIN_CPU"
listeners:
  - name: origin
    address: 127.0.0.1:$PORT
routes:
  - name: body
    matches: [{path: {type: prefix, value: /}}]
    return_response: {status: 200, body: "$BODY"}
CONF
    RINGWAY_LOG=warn "$RINGWAY" run --config "$WORK/origin.yaml" >"$WORK/origin.log" 2>&1 &
    ORIGIN_PID=$!
    ;;
*) fail "ORIGIN=$ORIGIN: say nginx or ringway" ;;
esac
up=""
for _ in $(seq 50); do
    if "$RINGLOAD" -n 1 -c 1 --json "$WORK/probe.json" "$URL" >/dev/null 2>&1 \
        && grep -q '"200"' "$WORK/probe.json"; then
        up=1; break
    fi
    sleep 0.1
done
[ -n "$up" ] || fail "the $ORIGIN origin did not come up on $URL"

echo "origin: $ORIGIN on CPU $ORIGIN_CPU; load on CPU $LOAD_CPU"

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}'; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

wrk_rps() {
    taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$CONNS" -d"$DURATION" "$URL" | awk '/^Requests\/sec:/ {print $2}'
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
    printf 'median:  wrk %.0f req/s, ringload %.0f req/s, ratio %s\n' "$W" "$R" "$(ratio "$R" "$W")"
    SATURATION=$R
}

# One open-loop run of tool $1 (ringload | oha | oha-lc) at rate $2; prints "rps p50 p99 max" (us).
open_run() {
    case "$1" in
    ringload)
        taskset -c "$LOAD_CPU" "$RINGLOAD" -w 1 -c "$CONNS" -d "$DURATION" --rate "$2" \
            --json "$WORK/o.json" "$URL" >/dev/null
        json "$WORK/o.json" '"%.1f %d %d %d" % (d["rps"], d["latency_us"]["p50"], d["latency_us"]["p99"], d["latency_us"]["max"])'
        ;;
    oha|oha-lc)
        local extra=()
        [ "$1" = oha-lc ] && extra=(--latency-correction)
        taskset -c "$LOAD_CPU" "$OHA" --no-tui -z "$DURATION" -c "$CONNS" -q "$2" "${extra[@]}" \
            --output-format json -o "$WORK/oha.json" "$URL" >/dev/null
        json "$WORK/oha.json" '"%.1f %d %d %d" % (d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p50"]*1e6, d["latencyPercentiles"]["p99"]*1e6, d["summary"]["slowest"]*1e6)'
        ;;
    esac
}

open_loop() {
    tools=(ringload oha oha-lc)
    for spec in $RATES; do
        if [ "$spec" = half ]; then
            [ -n "${SATURATION:-}" ] || SATURATION=$(ringload_rps)
            RATE=$(awk -v s="$SATURATION" 'BEGIN {printf "%.0f", s / 2}')
            what="half of saturation ($(printf '%.0f' "$SATURATION") req/s)"
        else
            RATE=$spec; what="fixed"
        fi
        echo "== open loop at $RATE req/s, $what: ringload --rate, oha -q, oha -q --latency-correction (oha-lc); $DURATION, $ROUNDS rounds"
        for t in "${tools[@]}"; do : >"$WORK/p99-$t"; done
        for round in $(seq "$ROUNDS"); do
            # Rotate the order so that no tool always runs first.
            for i in 0 1 2; do
                t=${tools[$(((i + round - 1) % 3))]}
                read -r rps p50 p99 _ < <(open_run "$t" "$RATE")
                echo "$p99" >>"$WORK/p99-$t"
                printf 'round %d: %-8s achieved %9.1f (%+.2f %%)  p50 %6d us  p99 %6d us\n' "$round" "$t" \
                    "$rps" "$(awk -v a="$rps" -v r="$RATE" 'BEGIN {print (a / r - 1) * 100}')" "$p50" "$p99"
            done
        done
        R=$(median <"$WORK/p99-ringload"); O=$(median <"$WORK/p99-oha"); L=$(median <"$WORK/p99-oha-lc")
        printf 'median p99 at %s req/s: ringload %s us, oha %s us (ratio %s), oha-lc %s us (ratio %s)\n' \
            "$RATE" "$R" "$O" "$(ratio "$R" "$O")" "$L" "$(ratio "$R" "$L")"
    done
}

# Stops (STOP) or resumes (CONT) the origin and its worker processes.
signal_origin() {
    kill -"$1" "$ORIGIN_PID" 2>/dev/null || true
    pkill -"$1" -P "$ORIGIN_PID" 2>/dev/null || true
}

stall() {
    tools=(ringload oha oha-lc)
    # The stall must end well inside the run: a tool drops what is unanswered at its end.
    awk -v s="$STALL" -v d="${DURATION%s}" 'BEGIN {exit !(d >= s + 5)}' \
        || fail "stall: DURATION ($DURATION) must be at least STALL + 5 seconds (${STALL}s + 5)"
    expect=$(awk -v s="$STALL" -v d="${DURATION%s}" 'BEGIN {printf "%.0f", s * (1 - 0.01 * d / s) * 1e6}')
    echo "== stall: origin stopped for ${STALL}s after 3s of each ${DURATION} run at $STALL_RATE req/s; corrected p99 expected near $expect us"
    for t in "${tools[@]}"; do : >"$WORK/p99-$t"; done
    for round in $(seq "$ROUNDS"); do
        for i in 0 1 2; do
            t=${tools[$(((i + round - 1) % 3))]}
            open_run "$t" "$STALL_RATE" >"$WORK/stall.out" &
            run=$!
            sleep 3
            signal_origin STOP
            sleep "$STALL"
            signal_origin CONT
            wait "$run"
            read -r rps p50 p99 max <"$WORK/stall.out"
            echo "$p99" >>"$WORK/p99-$t"
            printf 'round %d: %-8s achieved %9.1f  p50 %8d us  p99 %8d us  max %8d us\n' "$round" "$t" "$rps" "$p50" "$p99" "$max"
        done
    done
    R=$(median <"$WORK/p99-ringload"); O=$(median <"$WORK/p99-oha"); L=$(median <"$WORK/p99-oha-lc")
    printf 'median p99 with a %ss stall: ringload %s us, oha-lc %s us (ratio %s), oha %s us (ratio %s); expected %s us\n' \
        "$STALL" "$R" "$L" "$(ratio "$R" "$L")" "$O" "$(ratio "$R" "$O")" "$expect"
}

case "$MODE" in
    closed) closed ;;
    open) open_loop ;;
    stall) stall ;;
    all) closed; open_loop; stall ;;
esac
