#!/usr/bin/env bash
# run-fuzzers.sh: builds the libFuzzer targets (the "fuzz" preset: clang, -DFUZZ=ON, ASan and
# UBSan) and runs each for a while on its corpus. CI runs it as a smoke test; run it with a long
# -t locally to dig deeper.
#
#   tests/fuzz/run-fuzzers.sh [-t SECONDS] [-B BUILD_DIR] [--no-build] [--merge] [NAME...]
#                             [-- LIBFUZZER_FLAGS...]
#
#   -t SECONDS   how long each target runs (default 30)
#   -B DIR       build directory (default: the preset's, build-fuzz)
#   --no-build   use the binaries already in the build directory
#   --merge      afterwards, copy the inputs that add coverage into tests/fuzz/corpus/NAME/
#   NAME         only these targets (fuzz-NAME.c); default all
#
# The checked-in corpus is only read: new inputs go to BUILD_DIR/fuzz-work/NAME/, unless --merge.
# A crash leaves its input in tests/fuzz/artifacts/ (ignored by git); once the bug is fixed, copy
# the input into the target's corpus so ctest's fuzz/NAME keeps replaying it. The exit status is
# non-zero if any target failed.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=30
build=
do_build=1
merge=0
names=()
extra=()

while [ $# -gt 0 ]; do
    case $1 in
    -t) seconds=$2; shift 2 ;;
    -B) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --merge) merge=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "run-fuzzers: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
    esac
done

if [ ${#names[@]} -eq 0 ]; then
    for f in "$src"/tests/fuzz/fuzz-*.c; do
        [ -e "$f" ] || continue
        n=${f##*/fuzz-}
        names+=("${n%.c}")
    done
fi
if [ ${#names[@]} -eq 0 ]; then
    echo "run-fuzzers: no tests/fuzz/fuzz-*.c" >&2
    exit 1
fi

build=${build:-$src/build-fuzz}
if [ $do_build = 1 ]; then
    cmake -S "$src" --preset fuzz -B "$build"
    cmake --build "$build" --target "${names[@]/#/fuzz-}"
fi

artifacts=$src/tests/fuzz/artifacts
mkdir -p "$artifacts"
failed=()
for n in "${names[@]}"; do
    bin=$build/tests/fuzz/fuzz-$n
    corpus=$src/tests/fuzz/corpus/$n
    work=$build/fuzz-work/$n
    if [ ! -x "$bin" ]; then
        echo "run-fuzzers: $bin not built" >&2
        failed+=("$n")
        continue
    fi
    mkdir -p "$work" "$corpus"
    echo "=== fuzz-$n for ${seconds}s (corpus $corpus)"
    # -timeout: one input taking this long is a hang worth reporting, not a slow machine.
    if ! "$bin" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$n-" ${extra[@]+"${extra[@]}"} "$work" "$corpus"; then
        failed+=("$n")
        continue
    fi
    if [ $merge = 1 ]; then
        "$bin" -merge=1 "$corpus" "$work"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run-fuzzers: FAILED: ${failed[*]} (inputs in $artifacts/)"
    exit 1
fi
echo "run-fuzzers: ${names[*]}: no crashes in ${seconds}s each"
