#!/usr/bin/env bash
# Measures what learning costs, per image: the end-to-end learn tests (tests/it/learn.rs)
# assemble each daemon's image from this machine's packages, `unroot convert --learn`
# watches the original and proves each round's candidate; then, on the same image, the
# recipe it wrote is applied with `unroot convert --recipe FILE --verify` (the proof
# alone: one conversion and the two runs verify makes) and with plain `convert --recipe`
# (no run at all). (Test output interleaves, so the lines are found anywhere.) It prints, per image: rounds, changes learned, the seconds of each,
# and learning as a multiple of the proof alone and of the plain conversion.
#
# usage: benches/learn.sh [TEST_FILTER ...]   (default: the eight daemons)
# Needs root (runc in a user namespace) and the packages ./scripts/test installs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "benches/learn.sh needs root (the runs map a user namespace)" >&2; exit 3; }
filters=("$@")
if [ "${#filters[@]}" -eq 0 ]; then
  filters=(learn::tinyproxy learn::dropbear learn::nsd learn::dnsmasq learn::privoxy
    learn::icecast learn::mini_httpd learn::knot)
fi

log=$(mktemp /tmp/unroot-bench-learn.XXXXXX)
trap 'rm -f "$log"' EXIT
echo "building and running ${#filters[@]} learn tests (release build, one at a time)..." >&2
UNROOT_LEARN_BENCH=1 cargo test --release --locked --test it -- "${filters[@]}" \
  --test-threads 1 --nocapture >"$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }

python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
learned = {m[0]: (int(m[1]), float(m[2]), int(m[3]))
           for m in re.findall(r"(?:^|\s)learned (\S+): (\d+) rounds, ([\d.]+) s, (\d+) changes", text, re.M)}
bench = {m[0]: (float(m[1]), float(m[2]), float(m[3]))
         for m in re.findall(r"(?:^|\s)bench (\S+) learn=([\d.]+) verify=([\d.]+) convert=([\d.]+)", text, re.M)}
print("| image | rounds | changes | learning (report) | learning (wall) | `convert --recipe --verify` | `convert --recipe` | learning / proof | learning / convert |")
print("|---|---|---|---|---|---|---|---|---|")
for name in sorted(bench):
    rounds, seconds, changes = learned[name]
    wall, verify, convert = bench[name]
    print(f"| {name} | {rounds} | {changes} | {seconds:.1f} s | {wall:.1f} s | {verify:.1f} s | {convert:.2f} s | {wall/verify:.1f}x | {wall/convert:.0f}x |")
if not bench:
    sys.exit("no bench lines: did the tests run?")
PY
