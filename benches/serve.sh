#!/usr/bin/env bash
# The registry bot at scale, in one run: a local registry notifies `unroot serve` (SQLite
# state) of 100 pushes, 20 images that share a base (benches/gen_spec.py) pushed under 5
# tags each, and the bot converts every one. Prints conversions per minute, the time from
# the event to the converted tag (p50, p99), the bot's peak memory, and one conversion
# beside `skopeo copy` of the same image (registry -> another repository) and `zcat` of its
# layers.
#
# usage: benches/serve.sh [BASE_MB] [CONCURRENCY]     (defaults: 50 MB, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
base_mb=${1:-50}
concurrency=${2:-2}
images=20
tags=5

for t in docker-registry skopeo python3 curl; do
  command -v "$t" >/dev/null || { echo "benches/serve.sh needs $t (./scripts/test installs the packages)" >&2; exit 2; }
done

cargo build --release --quiet --bin unroot --example build_image
unroot=$PWD/target/release/unroot

work=$(mktemp -d /tmp/unroot-bench-serve.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "generating $images images on a ${base_mb} MB base..." >&2
python3 benches/gen_spec.py "$base_mb" > "$work/base.toml"
for i in $(seq "$images"); do
  { cat "$work/base.toml"; printf '\n[[layer]]\n[[layer.entry]]\npath = "/etc/image-id"\ntext = "%s\\n"\n' "$i"; } > "$work/spec$i.toml"
  target/release/examples/build_image "$work/spec$i.toml" "oci:$work/img$i:latest" >/dev/null
done

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" > "$work/token"
reg_port=$(free_port)
bot_port=$(free_port)
reg=127.0.0.1:$reg_port
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $reg
notifications:
  endpoints:
    - name: unroot
      url: http://127.0.0.1:$bot_port/hooks/distribution
      headers:
        Authorization: ["Bearer $token"]
      timeout: 5s
      threshold: 5
      backoff: 1s
YML
cat > "$work/rules.toml" <<TOML
listen = "127.0.0.1:$bot_port"
state = "sqlite:$work/state.db"
webhook_token_file = "$work/token"

[[rule]]
source = "$reg/bench/*"
exclude_tags = ["*-unprivileged"]
destination = "{registry}/{repository}:{tag}-unprivileged"
TOML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s "http://$reg/v2/" >/dev/null && break; sleep 0.1; done
"$unroot" serve -c "$work/rules.toml" --concurrency "$concurrency" --reconcile-every 0 2>"$work/bot.log" &
bot=$!
pids+=("$bot")
for _ in $(seq 100); do curl -s "http://127.0.0.1:$bot_port/healthz" >/dev/null && break; sleep 0.1; done

echo "pushing $((images * tags)) tags..." >&2
started=$(date +%s.%N)
for t in $(seq "$tags"); do
  for i in $(seq "$images"); do
    skopeo copy --quiet --dest-tls-verify=false "oci:$work/img$i:latest" "docker://$reg/bench/img$i:v$t"
  done
done
pushed=$(date +%s.%N)

total=$((images * tags))
while :; do
  done_n=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$bot_port/jobs?state=done&limit=1000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
  failed_n=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$bot_port/jobs?state=failed&limit=1000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
  [ "$failed_n" -eq 0 ] || { echo "$failed_n jobs failed; see $work/bot.log" >&2; tail -20 "$work/bot.log" >&2; exit 1; }
  [ "$done_n" -ge "$total" ] && break
  sleep 0.5
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$bot/status")
curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$bot_port/jobs?limit=1000" > "$work/jobs.json"
curl -s "http://127.0.0.1:$bot_port/metrics" > "$work/metrics.txt"
# A conversion whose layers are all in the bot's layer cache, the bot otherwise idle: a
# new tag of an image it converted, one at a time; the job's run time from /jobs.
cached=()
for r in 1 2 3; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/img1:latest" "docker://$reg/bench/img1:cached$r"
  for _ in $(seq 600); do
    run=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$bot_port/jobs?state=done&limit=1000" | python3 -c '
import json, sys
for j in json.load(sys.stdin)["jobs"]:
    if j["tag"] == "cached'"$r"'" and j["outcome"] == "converted":
        print((j["finished_ms"] - j["started_ms"]) / 1000)
')
    [ -n "$run" ] && break
    sleep 0.1
  done
  [ -n "$run" ] || { echo "the job of cached$r did not finish; see $work/bot.log" >&2; exit 1; }
  cached+=("$run")
done

curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$bot_port/jobs?limit=1000" > "$work/jobs-idle.json"

# One image beside the peers, the bot idle: a conversion by the CLI, skopeo copy, zcat.
layers=$(skopeo inspect --raw --tls-verify=false "docker://$reg/bench/img1:v1" |
  python3 -c 'import json,sys; [print(l["digest"].split(":")[1]) for l in json.load(sys.stdin)["layers"]]')
blob_files=()
for h in $layers; do blob_files+=("$work/storage/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"); done
zcat "${blob_files[@]}" >/dev/null
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
conv=(); copy=(); unz=()
for r in 1 2 3; do
  conv+=("$(timed "$unroot" convert -q "docker://$reg/bench/img1:v1" --to "docker://$reg/cli/img1:r$r")")
  copy+=("$(timed skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$reg/bench/img1:v1" "docker://$reg/copy/img1:r$r")")
  unz+=("$(timed sh -c 'zcat "$@" > /dev/null' zcat "${blob_files[@]}")")
done
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

python3 - "$work/jobs.json" "$started" "$pushed" "$rss_kib" "$(median3 "${conv[@]}")" "$(median3 "${copy[@]}")" "$(median3 "${unz[@]}")" "$base_mb" "$concurrency" "$(median3 "${cached[@]}")" "$work/metrics.txt" "$work/jobs-idle.json" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
started, pushed, rss = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
conv, copy, unz = (float(x) for x in sys.argv[5:8])
base_mb, concurrency = sys.argv[8], sys.argv[9]
cached = float(sys.argv[10])
metrics = dict(l.split() for l in open(sys.argv[11]) if l.startswith("unroot_layer_cache"))
converted = [j for j in jobs if j["outcome"] == "converted"]
idle = [j for j in json.load(open(sys.argv[12]))["jobs"] if (j["tag"] or "").startswith("cached")]
pickup = sorted((j["started_ms"] - j["created_ms"]) / 1000 for j in idle)
twins = {l.split()[0]: float(l.split()[1]) for l in open(sys.argv[11]) if l.startswith("unroot_event_to_twin_seconds_")}
lat = sorted((j["finished_ms"] - j["created_ms"]) / 1000 for j in converted)
run = sorted((j["finished_ms"] - j["started_ms"]) / 1000 for j in converted)
def pct(xs, p):
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
first = min(j["created_ms"] for j in converted) / 1000
last = max(j["finished_ms"] for j in converted) / 1000
print(f"\n{len(converted)} conversions ({len(jobs)} jobs) of 20 images on a {base_mb} MB base, 5 tags each, --concurrency {concurrency}")
print(f"pushing took {pushed - started:.1f} s; first event to last converted tag {last - first:.1f} s\n")
print("| measure | value |")
print("|---|---|")
print(f"| conversions per minute (first event to last conversion) | {len(converted) / (last - first) * 60:.0f} |")
print(f"| event to converted tag, p50 / p99 | {pct(lat, 50):.2f} s / {pct(lat, 99):.2f} s |")
print(f"| one job's conversion, p50 / p99 | {pct(run, 50):.2f} s / {pct(run, 99):.2f} s |")
print(f"| event to converted tag, mean from /metrics' histogram | {twins['unroot_event_to_twin_seconds_sum'] / max(1, twins['unroot_event_to_twin_seconds_count']):.2f} s over {twins['unroot_event_to_twin_seconds_count']:.0f} |")
print(f"| an idle bot: event to its job started (3 jobs, slowest) | {max(pickup) * 1000:.0f} ms |")
print(f"| the bot's peak RSS | {rss / 1024:.1f} MiB |")
print(f"| layers from the layer cache / read | {metrics.get('unroot_layer_cache_hits_total', '?')} / {metrics.get('unroot_layer_cache_misses_total', '?')} |")
print(f"| the bot's job for an image whose layers are all cached (median of 3) | {cached:.2f} s ({cached / copy:.2f}x skopeo copy) |")
print(f"| `unroot convert` of one image (CLI, median of 3) | {conv:.2f} s ({conv / copy:.2f}x skopeo copy, {conv / unz:.2f}x zcat) |")
print(f"| `skopeo copy` of it to another repository | {copy:.2f} s |")
print(f"| `zcat` of its layers | {unz:.2f} s |")
PY
