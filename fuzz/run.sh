#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each with AFL++ (cargo-afl, stable
# toolchain), and fails if any found a crash. Prints executions and coverage per target.
#
# usage: fuzz/run.sh [SECONDS] [TARGET ...]     (default: 60 s each, every target)
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(layer manifest reference recipe)

if ! cargo afl --version >/dev/null 2>&1; then
  echo "installing cargo-afl..." >&2
  cargo install cargo-afl --locked --quiet
fi
cargo afl build --release --quiet

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1
failed=0
for t in "${targets[@]}"; do
  out="out/$t"
  rm -rf "$out"
  mkdir -p out
  cargo afl fuzz -V "$seconds" -i "corpus/$t" -o "$out" "target/release/$t" >"out-$t.log" 2>&1 || {
    echo "$t: afl-fuzz failed:" >&2
    tail -20 "out-$t.log" >&2
    failed=1
    continue
  }
  stats="$out/default/fuzzer_stats"
  execs=$(awk -F: '/^execs_done/ {gsub(/ /,"",$2); print $2}' "$stats")
  cov=$(awk -F: '/^bitmap_cvg/ {gsub(/ /,"",$2); print $2}' "$stats")
  paths=$(awk -F: '/^corpus_count/ {gsub(/ /,"",$2); print $2}' "$stats")
  crashes=$(find "$out/default/crashes" -type f ! -name README.txt | wc -l)
  printf '%-10s %10s execs  coverage %-7s  corpus %5s  crashes %s\n' "$t" "$execs" "$cov" "$paths" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    echo "$t: crashing inputs in fuzz/$out/default/crashes (reproduce: target/release/$t < FILE)" >&2
    failed=1
  fi
done
exit $failed
