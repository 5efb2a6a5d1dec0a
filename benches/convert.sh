#!/usr/bin/env bash
# Measures, in one run and on the same generated image served by a local registry:
#   unroot convert   registry -> another repository of the same registry
#   unroot analyze   of the image in the registry
#   skopeo copy      registry -> another repository of the same registry
#   the umoci route  skopeo copy to a layout, umoci unpack, edit, umoci repack, skopeo copy
#                    back: the same conversion without unroot (benches/umoci_route.sh)
#   zcat             of every layer blob (the floor for reading the layers once)
# and prints medians, ratios to zcat, and peak memory (max RSS).
#
# usage: benches/convert.sh [SIZE_MB] [RUNS]     (defaults: 100 MB, 5 runs)
#   UNROOT_BASELINE=PATH  also measures convert and analyze with another unroot binary (an
#                         earlier build), interleaved in the same runs
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-100}
runs=${2:-5}

for t in docker-registry skopeo umoci python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "benches/convert.sh needs $t (./scripts/test installs the packages)" >&2; exit 2; }
done

cargo build --release --quiet --bin unroot --example build_image
unroot=$PWD/target/release/unroot

work=$(mktemp -d /tmp/unroot-bench.XXXXXX)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "generating a ${size_mb} MB image..." >&2
python3 benches/gen_spec.py "$size_mb" > "$work/spec.toml"
target/release/examples/build_image "$work/spec.toml" "oci:$work/img:latest" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
reg=127.0.0.1:$port
skopeo copy --quiet --dest-tls-verify=false "oci:$work/img:latest" "docker://$reg/bench/src:latest"

layers=$(skopeo inspect --raw --tls-verify=false "docker://$reg/bench/src:latest" |
  python3 -c 'import json,sys; [print(l["digest"].split(":")[1]) for l in json.load(sys.stdin)["layers"]]')
blob_files=()
compressed=0
for h in $layers; do
  f="$work/storage/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"
  blob_files+=("$f")
  compressed=$((compressed + $(stat -c %s "$f")))
done
uncompressed=$(zcat "${blob_files[@]}" | wc -c)

# Runs a command, appending "seconds max_rss_kib" to a file.
measure() {
  local out=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  cat "$work/time" >> "$out"
}

# Warm the page cache once, then interleave the tools run by run.
zcat "${blob_files[@]}" >/dev/null
for i in $(seq "$runs"); do
  measure "$work/unroot" "$unroot" convert -q "docker://$reg/bench/src:latest" --to "docker://$reg/bench/unroot-$i:latest"
  measure "$work/analyze" "$unroot" analyze -q --format json "docker://$reg/bench/src:latest"
  if [ -n "${UNROOT_BASELINE:-}" ]; then
    measure "$work/base-convert" "$UNROOT_BASELINE" convert -q "docker://$reg/bench/src:latest" --to "docker://$reg/bench/base-$i:latest"
    measure "$work/base-analyze" "$UNROOT_BASELINE" analyze -q --format json "docker://$reg/bench/src:latest"
  fi
  measure "$work/skopeo" skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    "docker://$reg/bench/src:latest" "docker://$reg/bench/skopeo-$i:latest"
  measure "$work/umoci" benches/umoci_route.sh "docker://$reg/bench/src:latest" \
    "docker://$reg/bench/umoci-$i:latest" "$work/umoci-work"
  measure "$work/zcat" sh -c 'zcat "$@" > /dev/null' zcat "${blob_files[@]}"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
max_rss() { awk '{print $2}' | sort -n | tail -1; }
z=$(cut -d' ' -f1 "$work/zcat" | median)
printf '\nimage: %d layers, %.1f MB compressed, %.1f MB uncompressed; %d runs each (median)\n\n' \
  "$(echo "$layers" | wc -l)" "$(echo "$compressed / 1048576" | bc -l)" "$(echo "$uncompressed / 1048576" | bc -l)" "$runs"
printf '| %-52s | %8s | %8s | %10s |\n' "command" "seconds" "vs zcat" "max RSS"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..12})"
tools="unroot analyze skopeo umoci zcat"
[ -n "${UNROOT_BASELINE:-}" ] && tools="unroot analyze base-convert base-analyze skopeo umoci zcat"
for tool in $tools; do
  t=$(cut -d' ' -f1 "$work/$tool" | median)
  m=$(max_rss < "$work/$tool")
  case $tool in
    unroot) label="unroot convert (registry -> new repo, same registry)" ;;
    analyze) label="unroot analyze (registry)" ;;
    base-convert) label="baseline unroot convert (same)" ;;
    base-analyze) label="baseline unroot analyze (same)" ;;
    skopeo) label="skopeo copy (registry -> new repo, same registry)" ;;
    umoci) label="umoci route (copy, unpack, edit, repack, copy back)" ;;
    zcat) label="zcat of all layers" ;;
  esac
  printf '| %-52s | %8.2f | %7.2fx | %7.1f MiB |\n' "$label" "$t" "$(echo "$t / $z" | bc -l)" "$(echo "$m / 1024" | bc -l)"
done
