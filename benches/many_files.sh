#!/usr/bin/env bash
# Measures the memory that the number of files costs: one layer of FILES empty files whose
# paths are about NAME_BYTES long (examples/many_files.rs), read from an OCI layout by
#   unroot analyze   the merged view of every path, and the analyzers over it
#   unroot convert   the same, then the plan and the new layer, to a new layout
#   umoci unpack     (rootless) the same layer unpacked to a directory
#   skopeo copy      layout -> new layout (copies the blobs, reads no entry)
#   tar -tzf         GNU tar listing every entry of the layer
#   zcat             of the layer blob
# and prints medians of time, the largest peak memory (max RSS) over the runs, and the
# memory per file.
#
# usage: benches/many_files.sh [FILES] [NAME_BYTES] [RUNS]   (defaults: 200000 60 3)
#   UNROOT_BASELINE=PATH  also measures analyze and convert with another unroot binary
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-200000}
name_bytes=${2:-60}
runs=${3:-3}

for t in skopeo umoci tar zcat bc /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "benches/many_files.sh needs $t (./scripts/test installs the packages)" >&2; exit 2; }
done

cargo build --release --quiet --bin unroot --example many_files
unroot=$PWD/target/release/unroot

work=$(mktemp -d /tmp/unroot-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "writing $files files with ${name_bytes}-byte paths..." >&2
target/release/examples/many_files "$work/img" "$files" "$name_bytes"
layer=$(python3 -c 'import json,sys; d=sys.argv[1]
m=json.load(open(d+"/index.json"))["manifests"][0]["digest"].split(":")[1]
print(d+"/blobs/sha256/"+json.load(open(d+"/blobs/sha256/"+m))["layers"][0]["digest"].split(":")[1])' "$work/img")

# Runs a command, appending "seconds max_rss_kib" to a file ("failed" when it fails).
measure() {
  local out=$1; shift
  if /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"; then
    cat "$work/time" >> "$out"
  else
    echo "failed: $*: $(tail -1 "$work/stderr")" >&2
    echo "failed" >> "$out"
  fi
}

zcat "$layer" >/dev/null
for i in $(seq "$runs"); do
  measure "$work/analyze" "$unroot" analyze -q --format json "oci:$work/img:latest"
  measure "$work/convert" "$unroot" convert -q "oci:$work/img:latest" --to "oci:$work/out-$i:latest"
  rm -rf "$work/out-$i"
  if [ -n "${UNROOT_BASELINE:-}" ]; then
    measure "$work/base-analyze" "$UNROOT_BASELINE" analyze -q --format json "oci:$work/img:latest"
    measure "$work/base-convert" "$UNROOT_BASELINE" convert -q "oci:$work/img:latest" --to "oci:$work/out-$i:latest"
    rm -rf "$work/out-$i"
  fi
  measure "$work/umoci" umoci unpack --rootless --image "$work/img:latest" "$work/bundle-$i"
  rm -rf "$work/bundle-$i"
  measure "$work/skopeo" skopeo copy --quiet "oci:$work/img:latest" "oci:$work/copy-$i:latest"
  rm -rf "$work/copy-$i"
  measure "$work/tar" tar -tzf "$layer"
  measure "$work/zcat" zcat "$layer"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
max_rss() { awk '{print $2}' | sort -n | tail -1; }
z=$(cut -d' ' -f1 "$work/zcat" | median)
printf '\none layer: %d files, paths of about %d bytes, %.1f MB compressed; %d runs each (median time, largest RSS)\n\n' \
  "$files" "$name_bytes" "$(echo "$(stat -c %s "$layer") / 1048576" | bc -l)" "$runs"
printf '| %-36s | %8s | %8s | %10s | %12s |\n' "command" "seconds" "vs zcat" "max RSS" "RSS per file"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..14})"
tools="analyze convert umoci skopeo tar zcat"
[ -n "${UNROOT_BASELINE:-}" ] && tools="analyze convert base-analyze base-convert umoci skopeo tar zcat"
for tool in $tools; do
  case $tool in
    analyze) label="unroot analyze (layout)" ;;
    convert) label="unroot convert (layout -> layout)" ;;
    base-analyze) label="baseline unroot analyze" ;;
    base-convert) label="baseline unroot convert" ;;
    umoci) label="umoci unpack --rootless" ;;
    skopeo) label="skopeo copy (layout -> layout)" ;;
    tar) label="tar -tzf (GNU tar)" ;;
    zcat) label="zcat of the layer" ;;
  esac
  if grep -q failed "$work/$tool"; then
    printf '| %-36s | %8s | %8s | %10s | %12s |\n' "$label" "failed" "" "" ""
    continue
  fi
  t=$(cut -d' ' -f1 "$work/$tool" | median)
  m=$(max_rss < "$work/$tool")
  printf '| %-36s | %8.2f | %7.2fx | %6.1f MiB | %9.0f B |\n' "$label" "$t" "$(echo "$t / $z" | bc -l)" \
    "$(echo "$m / 1024" | bc -l)" "$(echo "$m * 1024 / $files" | bc -l)"
done
