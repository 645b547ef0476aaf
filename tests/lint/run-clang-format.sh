#!/usr/bin/env bash
# run-clang-format.sh [ROOT]: checks that every C source under ROOT (default: this checkout) is
# formatted as the top-level .clang-format says, without changing anything. Lists each file that
# is not, with clang-format's own diagnostics, and exits 1; exits 77 (ctest's SKIP) when there is
# no clang-format. $CLANG_FORMAT picks the binary. Fix with: clang-format -i FILE...
#
# Different clang-format releases format a few constructs differently; CI and developers should
# use the same major version (the one Debian stable ships).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "${1:-$here/../..}" && pwd)
# shellcheck source=tests/lint/sources.sh
. "$here/sources.sh"

cf=${CLANG_FORMAT:-clang-format}
if ! command -v "$cf" >/dev/null 2>&1; then
    echo "clang-format not found (set CLANG_FORMAT or install clang-format): skipping"
    exit 77
fi

bad=()
n=0
while IFS= read -r f; do
    n=$((n + 1))
    if ! "$cf" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
        bad+=("${f#"$root"/}")
        # Show where, but keep a badly formatted file from burying the rest.
        "$cf" --style=file --dry-run "$f" 2>&1 | head -n 30 || true
    fi
done < <(list_sources "$root")

echo "$("$cf" --version | head -n 1): checked $n files under $root"
if [ ${#bad[@]} -gt 0 ]; then
    echo "${#bad[@]} file(s) need formatting; run: clang-format -i ${bad[*]}"
    exit 1
fi
