#!/bin/sh
# Runs one SDK suite for ctest: `run.sh [FILE]`, FILE a test file of this directory
# (default anthropic-sdk.test.mjs, the Anthropic TypeScript SDK suite; openai-sdk.test.mjs is the
# OpenAI TypeScript SDK suite, langchain.test.mjs LangChain's ChatOpenAI).
#
# Env: DUALROUTE_ROUTERD and DUALROUTE_FAKE_UPSTREAM, the binaries under test (CMake passes
# $<TARGET_FILE:...>). Installs the packages pinned in package-lock.json with `npm ci` when
# node_modules is missing or older than the lockfile, then runs `node --test FILE`. Exits 77
# (ctest: skipped) when node or npm is missing or node is older than the SDKs support (20).
set -eu

case $0 in */*) cd "${0%/*}" ;; esac

suite=${1:-anthropic-sdk.test.mjs}
name=sdk/${suite%%[-.]*}

if [ ! -f "$suite" ]; then
    echo "$name: no test file $suite" >&2
    exit 2
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "$name: node and npm are needed for this test; skipping" >&2
    exit 77
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "$name: the SDKs need Node.js 20 or later, found $(node --version); skipping" >&2
    exit 77
fi

: "${DUALROUTE_ROUTERD:?set DUALROUTE_ROUTERD to the dualroute-routerd binary}"
: "${DUALROUTE_FAKE_UPSTREAM:?set DUALROUTE_FAKE_UPSTREAM to the fake-upstream binary}"
export DUALROUTE_ROUTERD DUALROUTE_FAKE_UPSTREAM

# npm writes node_modules/.package-lock.json on every install: it is the stamp of the tree.
needs_install() {
    [ ! -f node_modules/.package-lock.json ] ||
        [ -n "$(find package-lock.json -newer node_modules/.package-lock.json)" ]
}
install() {
    if needs_install; then
        echo "$name: npm ci (node_modules missing or older than package-lock.json)" >&2
        npm ci --no-audit --no-fund
    fi
}
# Several suites and build trees may run this at once over the one source tree: serialise the
# install.
if command -v flock >/dev/null 2>&1; then
    exec 9<.
    flock 9
    install
    flock -u 9
    exec 9<&-
else
    install
fi

exec node --test "$suite"
