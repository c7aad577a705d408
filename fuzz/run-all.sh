#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named) for SECONDS each (default 600), one after another, with
# libFuzzer's memory limits, and prints one summary line per target.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_LOG_DIR    where each target's libFuzzer log goes (default /tmp): $FUZZ_LOG_DIR/fuzz-<target>.log
#   FUZZ_TIMEOUT    seconds one input may take before libFuzzer reports a timeout (default 30)
#   FUZZ_ARGS       extra libFuzzer arguments
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes.
# Seeds come from fuzz/seeds/<target>/ (regenerate with fuzz/gen_seeds.py) plus the repository's GGUF test
# fixtures when present; the corpus grows in fuzz/corpus/<target>/ and crashes land in fuzz/artifacts/<target>/.
set -u -o pipefail

cd "$(dirname "$0")"
SECS=${1:-600}
[ $# -gt 0 ] && shift
SANITIZER=${FUZZ_SANITIZER:-address}
LOG_DIR=${FUZZ_LOG_DIR:-/tmp}
TIMEOUT=${FUZZ_TIMEOUT:-30}
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER" || exit 1

declare -a SUMMARY
for t in "${TARGETS[@]}"; do
    corpus=corpus/$t
    artifacts=artifacts/$t
    mkdir -p "$corpus" "$artifacts" "$LOG_DIR"
    [ -d "seeds/$t" ] && cp -n "seeds/$t"/* "$corpus"/ 2>/dev/null
    case $t in
        gguf|gguf_load)
            for f in ../crates/llm2vec/tests/fixtures/gguf/*.gguf; do
                [ -f "$f" ] && cp -n "$f" "$corpus/fixture-$(basename "$f")"
            done
            ;;
    esac
    log=$LOG_DIR/fuzz-$t.log
    before=$(ls "$artifacts" | wc -l)
    echo "fuzzing $t for ${SECS}s (log: $log)"
    start=$(date +%s)
    # shellcheck disable=SC2086
    cargo fuzz run --sanitizer "$SANITIZER" "$t" "$corpus" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout="$TIMEOUT" \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    # Fuzzing time alone (without the build `cargo fuzz run` may do first), from libFuzzer's last line.
    fuzzed=$(grep -o '^Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
    stat() { grep -o "^stat::$1: *[0-9]*" "$log" | tail -1 | grep -o '[0-9]*$'; }
    runs=$(stat number_of_executed_units)
    if [ -z "$runs" ]; then
        # Killed before the final stats (a crash prints none): take the last status line.
        runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    eps=$(stat average_exec_per_sec)
    rss=$(stat peak_rss_mb)
    [ -z "$rss" ] && rss=$(grep -o 'rss: [0-9]*Mb' "$log" | tail -1 | grep -o '[0-9]*')
    crashes=$(( $(ls "$artifacts" | wc -l) - before ))
    files=$(ls "$corpus" | wc -l)
    kb=$(( $(du -sb "$corpus" | cut -f1) / 1024 ))
    line=$(printf '%-12s rc=%-3s fuzzed=%4ss (wall %4ss) runs=%-10s exec/s=%-7s peak_rss=%sMB new_artifacts=%s corpus=%s files (%s KB)' \
        "$t" "$rc" "${fuzzed:-?}" "$elapsed" "${runs:-?}" "${eps:-?}" "${rss:-?}" "$crashes" "$files" "$kb")
    echo "$line"
    if [ "$crashes" -gt 0 ]; then
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|.*artifact_prefix.*Test unit written)' "$log" | head -5
    fi
    SUMMARY+=("$line")
    # The targets that read through the file system leave their per-process files behind.
    case $t in
        gguf_load) rm -f /dev/shm/llm2vec-fuzz-*.gguf ;;
        checkpoint) rm -rf /dev/shm/llm2vec-fuzz-checkpoint-* ;;
        eval_cache) rm -rf /dev/shm/llm2vec-fuzz-cache-* ;;
    esac
done

echo
echo "summary (${SECS}s per target, sanitizer $SANITIZER):"
printf '%s\n' "${SUMMARY[@]}"
