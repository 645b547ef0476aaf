#!/usr/bin/env bash
# bootstrap.sh: the two commands of the README, for a fresh Debian 12 machine.
#
#   scripts/bootstrap.sh run    install what is missing, build (release), run dualroute-authd
#                               (state in ./state) and dualroute-routerd in service mode
#   scripts/bootstrap.sh test   install what is missing, build, run every test, then the same
#                               tests again in the AddressSanitizer + UBSan build
#
# Extra arguments after "run" go to dualroute-routerd. Packages come from Debian only; the SDK
# tests fetch their pinned npm packages themselves. Needs root or sudo for apt-get, nothing else.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

build_pkgs=(build-essential cmake ninja-build pkg-config libmicrohttpd-dev libcurl4-openssl-dev
            libjansson-dev libsqlite3-dev libssl-dev libsystemd-dev)
test_pkgs=(clang clang-format libclang-rt-14-dev python3 python3-prometheus-client curl wrk nginx-light
           systemd dpkg-dev)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    # Node.js for the SDK tests: Debian's nodejs only where none is installed (the SDK majors we
    # pin run on Node 18 and 20).
    if [ "${need_node:-0}" = 1 ] && ! command -v node >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "Installing: ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# Dev mode: dualroute-authd with its state in ./state (your uid gets every role), and
# dualroute-routerd in service mode taking credentials and routes from it. ANTHROPIC_API_KEY, when
# set, becomes (or replaces) the account "default", passed to authd on stdin, never in argv.
run_both() {
    local bin=./build-release state=./state authd_pid
    mkdir -p "$state"
    "$bin/authd/dualroute-authd" --state-dir "$state" &
    authd_pid=$!
    trap 'kill $authd_pid 2>/dev/null; wait $authd_pid 2>/dev/null' EXIT
    for _ in $(seq 100); do
        [ -S "$state/authd.sock" ] && break
        kill -0 $authd_pid 2>/dev/null || { echo "dualroute-authd failed to start" >&2; exit 1; }
        sleep 0.1
    done
    local ctl=("$bin/ctl/dualroutectl" --socket "$state/authd.sock" -q)
    if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
        local fp
        fp=$(printf %s "$ANTHROPIC_API_KEY" | sha256sum | cut -c1-8)
        if ! "${ctl[@]}" --json account list | grep -q "\"fingerprint\": \"$fp\""; then
            "${ctl[@]}" account remove default >/dev/null 2>&1 || true
            printf '%s\n' "$ANTHROPIC_API_KEY" |
                "${ctl[@]}" account add default --provider anthropic --api-key-file -
            echo "ANTHROPIC_API_KEY is stored in dualroute-authd as account 'default'."
        fi
        unset ANTHROPIC_API_KEY
    fi
    "${ctl[@]}" account list || true
    echo "Starting dualroute-routerd on http://127.0.0.1:${ROUTER_PORT:-3000} (Ctrl-C stops both)."
    "$bin/routerd/dualroute-routerd" --authd-socket "$state/authd.sock" "$@"
}

case "${1:-}" in
run)
    shift
    install_missing "${build_pkgs[@]}"
    cmake --preset release >/dev/null
    cmake --build --preset release
    run_both "$@"
    ;;
test)
    need_node=1 install_missing "${build_pkgs[@]}" "${test_pkgs[@]}"
    cmake --preset default >/dev/null
    cmake --build --preset default
    ctest --preset default -j2
    echo "=== The same tests under AddressSanitizer and UndefinedBehaviorSanitizer ==="
    cmake --preset asan >/dev/null
    cmake --build --preset asan
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --preset asan -j2 -LE no-sanitizer
    ;;
*)
    echo "usage: $0 run [routerd options] | test" >&2
    exit 2
    ;;
esac
