#!/usr/bin/env bash
# Drive a libFuzzer target (used by the CTest tests in fuzz/CMakeLists.txt).
#
#   run.sh replay FUZZER DIR...
#       Run every file in the DIRs through FUZZER once; fail on any crash.
#   run.sh fuzz FUZZER SECONDS WORKDIR SEED_DIR...
#       Copy the seeds into WORKDIR/corpus and fuzz for SECONDS. Any input
#       that crashes, leaks or times out is saved in WORKDIR/artifacts and
#       the run fails; copy it into fuzz/regressions/ so it is replayed
#       from then on.
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" >&2
    exit 2
}

inputs() { # the regular files directly in each DIR, README and dotfiles excepted
    local d
    for d in "$@"; do
        [ -d "$d" ] || continue
        find "$d" -maxdepth 1 -type f ! -name '.*' ! -name 'README*' -print0
    done
}

[ $# -ge 2 ] || usage
mode=$1
fuzzer=$2
shift 2
case $mode in
replay)
    files=()
    while IFS= read -r -d '' f; do files+=("$f"); done < <(inputs "$@" | sort -z)
    if [ ${#files[@]} -eq 0 ]; then
        echo "no inputs in: $*"
        exit 0
    fi
    echo "replaying ${#files[@]} inputs"
    # Given file paths, libFuzzer runs each once and exits non-zero on a crash.
    exec "$fuzzer" -timeout=10 "${files[@]}"
    ;;
fuzz)
    [ $# -ge 2 ] || usage
    seconds=$1
    work=$2
    shift 2
    rm -rf "$work/corpus" "$work/artifacts"
    mkdir -p "$work/corpus" "$work/artifacts"
    while IFS= read -r -d '' f; do cp "$f" "$work/corpus/"; done < <(inputs "$@")
    echo "fuzzing for ${seconds}s on $(ls "$work/corpus" | wc -l) seeds in $work/corpus"
    set +e
    "$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus"
    rc=$?
    set -e
    found=$(ls -A "$work/artifacts")
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        echo "FUZZER FOUND A PROBLEM (exit code $rc). Inputs saved:"
        ls -l "$work/artifacts"
        echo "Replay one with: $fuzzer <file>"
        echo "Keep it as a regression test: cp $work/artifacts/<file> <source>/fuzz/regressions/"
        exit 1
    fi
    ;;
*)
    usage
    ;;
esac
