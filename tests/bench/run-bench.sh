#!/usr/bin/env bash
# run-bench.sh: measure routerd against a bare upstream and an nginx hop, in one run.
#
# It starts three servers on 127.0.0.1, all pinned to one cpu (BENCH_SERVER_CPU, default 0): the
# fake upstream (--no-record), nginx (one worker, reverse proxy to the fake with a keepalive pool,
# config from nginx.conf.in) and routerd (--upstream the fake, -q). Then, with every client pinned
# to another cpu (BENCH_CLIENT_CPU, default 1), it:
#   1. reads each target's idle RSS and warms every target up;
#   2. runs wrk (-t1, post.lua, a ~1 KB Messages body) for each mode (json, sse; opt-in: chat,
#      chat-sse) x connections (1, 16, 64) x target (direct = the fake, nginx, dualroute), targets
#      interleaved so drift hits all three alike; around each cell it reads the target's and the
#      fake's utime+stime from /proc/PID/stat. The chat modes POST an OpenAI body to routerd's
#      /v1/chat/completions and the equivalent Messages body (the one routerd forwards) to direct
#      and nginx, after one probe request per target has checked the answers' shape and counted
#      the events of the fake's default stream;
#   3. times the first body byte of sequential requests on one keep-alive connection (benchtool.py
#      ttfb) for each target: a stream whose first event comes 1 ms before the rest (sse-first,
#      the "first SSE byte" figure), the default 36-event burst (sse) and JSON; with the chat
#      modes also chat (JSON) and chat-sse-first;
#   4. reads RSS after the runs, then opens BENCH_STREAMS held-open SSE streams through routerd and
#      reads its RSS while they are open (benchtool.py streams);
#   5. prints the table and the target checks and writes the results as JSON (benchtool.py report).
# Only ratios from one run mean anything on a shared machine: run it twice (see README.md).
#
# It builds nothing: point it at release binaries (DUALROUTE_ROUTERD, DUALROUTE_FAKE_UPSTREAM or
# --routerd/--fake). Every process it starts is stopped on exit, by pid, within a few seconds.
# Exit status: 0 ran (whatever the numbers), 1 the harness failed (a server died, a cell had
# errors, ...), 2 usage or missing binaries, 3 --strict and a target check failed, 77 a tool
# (wrk, nginx, python3, taskset) is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
    cat <<EOF
Usage: $0 [--smoke] [--strict] [--keep] [--routerd PATH] [--fake PATH] [--out FILE]

  --smoke      1 s cells, 1 and 16 connections, json and chat only, 100 streams (checks the
               harness works)
  --strict     exit 3 when one of dualroute's targets fails
  --keep       keep the work directory (wrk outputs, server logs, cells.jsonl)
  --routerd    routerd binary  (env DUALROUTE_ROUTERD, default build-release/routerd/dualroute-routerd)
  --fake       fake upstream   (env DUALROUTE_FAKE_UPSTREAM, default build-release/tests/fakes/fake-upstream)
  --out        results JSON    (env BENCH_OUT, default ./bench-results.json)

Environment: BENCH_SECONDS (5) per cell, BENCH_CONNS ("1 16 64"), BENCH_MODES ("json sse";
also chat and chat-sse: OpenAI /v1/chat/completions at routerd), BENCH_WARMUP_SECONDS (2),
BENCH_TTFB_REQUESTS (2000), BENCH_TTFB_KINDS ("sse-first sse json", plus chat with the chat mode
and chat-sse-first with chat-sse), BENCH_STREAMS (1000),
BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_KEEP (0).
Build the binaries first: cmake --preset release && cmake --build build-release
EOF
}

smoke=0
strict=0
keep=${BENCH_KEEP:-0}
routerd_bin=${DUALROUTE_ROUTERD:-$repo/build-release/routerd/dualroute-routerd}
fake_bin=${DUALROUTE_FAKE_UPSTREAM:-$repo/build-release/tests/fakes/fake-upstream}
out=${BENCH_OUT:-$PWD/bench-results.json}
while (($#)); do
    case $1 in
    --smoke) smoke=1 ;;
    --strict) strict=1 ;;
    --keep) keep=1 ;;
    --routerd) routerd_bin=$2; shift ;;
    --fake) fake_bin=$2; shift ;;
    --out) out=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

if ((smoke)); then
    secs=${BENCH_SECONDS:-1}
    conns_list=${BENCH_CONNS:-"1 16"}
    modes=${BENCH_MODES:-"json chat"}
    warmup=${BENCH_WARMUP_SECONDS:-1}
    ttfb_n=${BENCH_TTFB_REQUESTS:-300}
    ttfb_kinds=${BENCH_TTFB_KINDS:-"sse-first json"}
    n_streams=${BENCH_STREAMS:-100}
else
    secs=${BENCH_SECONDS:-5}
    conns_list=${BENCH_CONNS:-"1 16 64"}
    modes=${BENCH_MODES:-"json sse"}
    warmup=${BENCH_WARMUP_SECONDS:-2}
    ttfb_n=${BENCH_TTFB_REQUESTS:-2000}
    ttfb_kinds=${BENCH_TTFB_KINDS:-"sse-first sse json"}
    n_streams=${BENCH_STREAMS:-1000}
fi
for mode in $modes; do
    case $mode in
    json | sse | chat | chat-sse) ;;
    *)
        echo "run-bench: unknown mode '$mode' in BENCH_MODES (json, sse, chat, chat-sse)" >&2
        exit 2
        ;;
    esac
done
# The chat first-byte timings come with the chat modes unless BENCH_TTFB_KINDS says otherwise.
if [[ -z ${BENCH_TTFB_KINDS:-} ]]; then
    [[ " $modes " == *" chat "* ]] && ttfb_kinds+=" chat"
    [[ " $modes " == *" chat-sse "* ]] && ttfb_kinds+=" chat-sse-first"
fi
for kind in $ttfb_kinds; do
    case $kind in
    sse-first | sse | json | chat | chat-sse-first) ;;
    *) echo "run-bench: unknown kind '$kind' in BENCH_TTFB_KINDS" >&2; exit 2 ;;
    esac
done
chat_on=0
[[ " $modes $ttfb_kinds " == *" chat"* ]] && chat_on=1
ncpu=$(nproc)
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
if ((ncpu < 2)) && [[ -z ${BENCH_CLIENT_CPU:-} ]]; then
    echo "run-bench: only one cpu: clients share it with the servers; latencies will suffer" >&2
    client_cpu=0
fi

say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }

PATH=$PATH:/usr/sbin:/sbin
for tool in wrk nginx python3 taskset timeout; do
    if ! command -v "$tool" >/dev/null; then
        say "skip: $tool not found (apt-get install -y wrk nginx-light python3 util-linux)"
        exit 77
    fi
done
for bin in "$routerd_bin" "$fake_bin"; do
    if [[ ! -x $bin ]]; then
        say "error: $bin is not an executable; build the release preset first:"
        say "  cmake --preset release && cmake --build build-release"
        exit 2
    fi
done

# The real interpreter, not a wrapper such as a pyenv shim (which costs seconds per start here).
python=$(python3 -c 'import sys; print(sys.executable)')
tool=("$python" "$here/benchtool.py")
client=(taskset -c "$client_cpu")
server=(taskset -c "$server_cpu")
# A safety net for when this script is killed with SIGKILL: the servers get SIGTERM when it dies.
if command -v setpriv >/dev/null && setpriv --pdeathsig TERM true 2>/dev/null; then
    server=(setpriv --pdeathsig TERM "${server[@]}")
fi
clk_tck=$(getconf CLK_TCK)

# Routerd holds one client and one upstream socket per stream; wrk and the stream client need one
# each too.
hard=$(ulimit -Hn)
want=$((n_streams * 2 + 1024))
if [[ $hard != unlimited ]] && ((hard < want)); then
    say "warning: hard fd limit $hard < $want; the streams phase may fail"
    want=$hard
fi
soft=$(ulimit -Sn)
if [[ $soft != unlimited ]] && ((soft < want)); then
    ulimit -n "$want"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dualroute-bench.XXXXXX")
server_pids=()
nginx_worker=""

alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    read -r state </proc/"$1"/stat || return 1
    state=${state##*) }
    [[ ${state:0:1} != Z ]]
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$? pid i left
    trap - EXIT INT TERM HUP
    trap '' PIPE # the terminal or pipe may be gone: finish the clean-up anyway
    set +e
    # Newest first: routerd drains its streams (drain_timeout=2s), nginx and the fake stop at once.
    for ((i = ${#server_pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${server_pids[i]}" 2>/dev/null
    done
    for ((i = 0; i < 50; i++)); do
        left=0
        for pid in "${server_pids[@]}" $nginx_worker; do
            alive "$pid" && left=1
        done
        ((left)) || break
        sleep 0.1
    done
    for pid in "${server_pids[@]}" $nginx_worker; do
        if alive "$pid"; then
            say "pid $pid did not stop within 5 s; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    for pid in "${server_pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if ((keep)) || ((rc == 1)); then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

cpu_ticks() { # utime + stime of the whole process, in clock ticks
    local line
    read -r line </proc/"$1"/stat || die "process $1 is gone"
    local -a f
    read -ra f <<<"${line##*) }"
    echo $((f[11] + f[12]))
}

cpu_busy_total() { # busy and total ticks of one cpu from /proc/stat: "BUSY TOTAL"
    local name user nice system idle iowait irq softirq steal rest
    while read -r name user nice system idle iowait irq softirq steal rest; do
        if [[ $name == "cpu$1" ]]; then
            echo "$((user + nice + system + irq + softirq + steal))" \
                "$((user + nice + system + idle + iowait + irq + softirq + steal))"
            return
        fi
    done </proc/stat
    die "cpu$1 not in /proc/stat"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status; }

check_alive() {
    alive "$fake_pid" || die "the fake upstream died; see $work/fake.err"
    alive "$routerd_pid" || die "routerd died; see $work/routerd.err"
    alive "$nginx_pid" || die "nginx died; see $work/nginx/error.log"
}

# --- servers ----------------------------------------------------------------------------------

"${tool[@]}" body json >"$work/body-json.json"
"${tool[@]}" body sse >"$work/body-sse.json"
# The chat modes: routerd gets the OpenAI body, direct and nginx the Messages body routerd makes of
# it (byte for byte, so the fake does the same work behind every target).
for mode in chat chat-sse; do
    "${tool[@]}" body "$mode" >"$work/body-$mode.json"
    "${tool[@]}" body "$mode-anthropic" >"$work/body-$mode-anthropic.json"
done

"${server[@]}" "$fake_bin" --listen 127.0.0.1 --port 0 --no-record \
    >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
server_pids+=("$fake_pid")
fake_port=""
for ((i = 0; i < 100; i++)); do
    fake_port=$(sed -n 's/^PORT=\([0-9]*\)$/\1/p' "$work/fake.out")
    [[ -n $fake_port ]] && break
    alive "$fake_pid" || die "the fake upstream exited: $(tail -5 "$work/fake.err")"
    sleep 0.1
done
[[ -n $fake_port ]] || die "the fake upstream printed no PORT= within 10 s"

# routerd gets a port chosen here rather than port 0: with -q it does not log the port it bound.
max_conns=$((n_streams + 256 > 2048 ? n_streams + 256 : 2048))
routerd_args=(--listen 127.0.0.1 --upstream "http://127.0.0.1:$fake_port" -q
    --set "max_connections=$max_conns" --set "max_connections_per_ip=$max_conns"
    --set drain_timeout=2s)
for attempt in 1 2 3; do
    routerd_port=$("${tool[@]}" freeport)
    ANTHROPIC_API_KEY=sk-ant-api03-bench "${server[@]}" "$routerd_bin" -p "$routerd_port" \
        "${routerd_args[@]}" >"$work/routerd.out" 2>"$work/routerd.err" &
    routerd_pid=$!
    server_pids+=("$routerd_pid")
    if "${tool[@]}" wait --port "$routerd_port" --path /health --timeout 10; then
        break
    fi
    alive "$routerd_pid" && die "routerd does not answer on port $routerd_port"
    say "routerd exited (attempt $attempt): $(tail -3 "$work/routerd.err")"
    ((attempt < 3)) || die "routerd did not start"
done

mkdir -p "$work/nginx"
user_line="# not root: nginx runs as the current user"
((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
for attempt in 1 2 3; do
    nginx_port=$("${tool[@]}" freeport)
    sed -e "s|@USER_LINE@|$user_line|" -e "s|@DIR@|$work/nginx|g" -e "s|@PORT@|$nginx_port|g" \
        -e "s|@FAKE_PORT@|$fake_port|g" "$here/nginx.conf.in" >"$work/nginx/nginx.conf"
    "${server[@]}" nginx -p "$work/nginx/" -e "$work/nginx/error.log" \
        -c "$work/nginx/nginx.conf" >"$work/nginx/stdout" 2>&1 &
    nginx_pid=$!
    server_pids+=("$nginx_pid")
    if "${tool[@]}" wait --port "$nginx_port" --timeout 10; then
        break
    fi
    alive "$nginx_pid" && die "nginx does not answer on port $nginx_port"
    say "nginx exited (attempt $attempt): $(tail -3 "$work/nginx/error.log")"
    ((attempt < 3)) || die "nginx did not start"
done
nginx_worker=$(pgrep -P "$nginx_pid" | head -1 || true)
[[ -n $nginx_worker ]] || die "nginx has no worker process"

declare -A port=([direct]=$fake_port [nginx]=$nginx_port [dualroute]=$routerd_port)
declare -A pid=([direct]=$fake_pid [nginx]=$nginx_worker [dualroute]=$routerd_pid)
targets=(direct nginx dualroute)
say "fake :$fake_port (pid $fake_pid), nginx :$nginx_port (worker pid $nginx_worker)," \
    "routerd :$routerd_port (pid $routerd_pid); servers on cpu $server_cpu, clients on cpu $client_cpu"

cells=$work/cells.jsonl
: >"$cells"
for t in "${targets[@]}"; do
    echo "{\"record\":\"rss\",\"target\":\"$t\",\"when\":\"idle\",\"kb\":$(rss_kb "${pid[$t]}")}" >>"$cells"
done

# One request per target and chat kind before anything is timed: a 200 that is not a real
# translation (or a stream without [DONE]) would make the numbers meaningless. The probe of the
# fake's default stream counts its events for "CPU per upstream event" instead of assuming 36.
if ((chat_on)); then
    for kind in chat chat-sse; do
        for t in "${targets[@]}"; do
            api=anthropic
            [[ $t == dualroute ]] && api=openai
            r=$("${client[@]}" timeout 30 "${tool[@]}" probe --port "${port[$t]}" --kind "$kind" \
                --api "$api") || die "the $kind probe of $t failed: $r"
            echo "{\"record\":\"probe\",\"target\":\"$t\",${r#\{}" >>"$cells"
            if [[ $kind == chat-sse ]]; then
                case $t in
                direct) up_events=$(sed -n 's/.*"events": \([0-9]*\).*/\1/p' <<<"$r") ;;
                dualroute) out_chunks=$(sed -n 's/.*"chunks": \([0-9]*\).*/\1/p' <<<"$r") ;;
                esac
            fi
        done
    done
    say "chat probes: the fake's default stream has $up_events events; routerd makes" \
        "$out_chunks chat.completion.chunk events and [DONE] of them"
fi

"${tool[@]}" meta "started=$(date -Is)" "smoke=$( ((smoke)) && echo true || echo false)" \
    "seconds=$secs" "ncpu=$ncpu" "server_cpu=$server_cpu" "client_cpu=$client_cpu" \
    "clk_tck=$clk_tck" "ttfb_requests=$ttfb_n" "streams=$n_streams" "routerd=$routerd_bin" \
    "fake=$fake_bin" "nginx=$(nginx -v 2>&1 | sed 's/.*: //')" \
    "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')" \
    "routerd_args=${routerd_args[*]}" "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" \
    >"$work/meta.json"

# --- wrk cells --------------------------------------------------------------------------------

wrk_run() { # wrk_run MODE CONNS SECONDS TARGET OUTFILE
    local body=$work/body-$1.json path=/v1/messages api=anthropic
    if [[ $1 == chat* ]]; then
        if [[ $4 == dualroute ]]; then
            path=/v1/chat/completions api=openai
        else
            body=$work/body-$1-anthropic.json
        fi
    fi
    "${client[@]}" timeout $(($3 + 30)) wrk -t1 -c"$2" -d"$3"s --timeout 5s --latency \
        -s "$here/post.lua" "http://127.0.0.1:${port[$4]}$path" -- "$body" "$api" >"$5" 2>&1 ||
        die "wrk failed: $(tail -3 "$5")"
}

say "warming up ($warmup s per target and mode at 16 connections)"
for t in "${targets[@]}"; do
    for mode in $modes; do
        wrk_run "$mode" 16 "$warmup" "$t" "$work/warmup-$t-$mode.txt"
    done
done
check_alive

for mode in $modes; do
    for c in $conns_list; do
        for t in "${targets[@]}"; do
            out_file=$work/wrk-$mode-$c-$t.txt
            read -r b0 a0 < <(cpu_busy_total "$server_cpu")
            t0=$(cpu_ticks "${pid[$t]}")
            f0=$(cpu_ticks "$fake_pid")
            wrk_run "$mode" "$c" "$secs" "$t" "$out_file"
            t1=$(cpu_ticks "${pid[$t]}")
            f1=$(cpu_ticks "$fake_pid")
            read -r b1 a1 < <(cpu_busy_total "$server_cpu")
            check_alive
            json=$(sed -n 's/^BENCHJSON //p' "$out_file")
            [[ -n $json ]] || die "no BENCHJSON line in $out_file"
            echo "{\"record\":\"cell\",\"mode\":\"$mode\",\"conns\":$c,\"target\":\"$t\"," \
                "\"cpu_ticks\":$((t1 - t0)),\"fake_cpu_ticks\":$((f1 - f0))," \
                "\"server_cpu_busy_ticks\":$((b1 - b0)),\"server_cpu_total_ticks\":$((a1 - a0))," \
                "\"wrk\":$json}" >>"$cells"
            say "$(printf '%-4s %3s conns %-9s %s' "$mode" "$c" "$t" \
                "$(grep -E '^Requests/sec|^ +50%' "$out_file" | tr -s ' ' | tr '\n' ' ')")"
        done
    done
done

# --- time to first byte -------------------------------------------------------------------------

for kind in $ttfb_kinds; do
    for t in "${targets[@]}"; do
        api=anthropic
        [[ $kind == chat* && $t == dualroute ]] && api=openai
        r=$("${client[@]}" timeout 300 "${tool[@]}" ttfb --port "${port[$t]}" --kind "$kind" \
            --api "$api" --fake-port "$fake_port" --requests "$ttfb_n") ||
            die "ttfb client failed against $t"
        echo "{\"record\":\"ttfb\",\"target\":\"$t\",${r#\{}" >>"$cells"
        say "ttfb $kind $t: $r"
    done
done
check_alive

for t in "${targets[@]}"; do
    echo "{\"record\":\"rss\",\"target\":\"$t\",\"when\":\"after_runs\",\"kb\":$(rss_kb "${pid[$t]}")}" >>"$cells"
done

# --- open streams ------------------------------------------------------------------------------

say "opening $n_streams held-open streams through routerd"
r=$("${client[@]}" timeout 300 "${tool[@]}" streams --port "$routerd_port" --pid "$routerd_pid" \
    --fake-port "$fake_port" --fake-pid "$fake_pid" --n "$n_streams") ||
    die "streams client failed"
echo "{\"record\":\"streams\",${r#\{}" >>"$cells"
say "streams: $r"
check_alive

echo "{\"record\":\"load\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$cells"

# --- report ------------------------------------------------------------------------------------

report_args=(--cells "$cells" --meta "$work/meta.json" --out "$out")
((strict)) && report_args+=(--strict)
rc=0
"${tool[@]}" report "${report_args[@]}" || rc=$?
say "results written to $out"
exit "$rc"
