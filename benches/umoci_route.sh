#!/usr/bin/env bash
# The same conversion as `unroot convert` on the benchmark image, done the umoci way:
# copy the image to a layout, unpack the root filesystem, edit it, repack a new layer,
# set the config, copy it back to the registry.
#
# usage: benches/umoci_route.sh SRC_REF DEST_REF WORK_DIR    (refs as docker://HOST/REPO:TAG)
set -euo pipefail
src=$1 dest=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
skopeo copy --quiet --src-tls-verify=false "$src" "oci:$work/layout:src"
umoci unpack --image "$work/layout:src" "$work/bundle" >/dev/null
r=$work/bundle/rootfs
# What unroot's plan does to this image: code back to root, writable dirs to UID:0 + g+w.
chown 0:0 "$r/app" "$r/app/bin" "$r/app/lib" "$r/app/bin/server" "$r/app/lib/libapp.so.1"
chown -R 1000:0 "$r/app/cache"
chmod -R g+w "$r/app/cache"
chown 1000:0 "$r/app/static"
chmod g+w "$r/app/static"
sed -i 's/listen 80/listen 8080/' "$r/etc/app.conf"
umoci repack --image "$work/layout:out" "$work/bundle" >/dev/null
umoci config --image "$work/layout:out" --config.user 1000:0 \
  --config.exposedports 8080/tcp --config.env PORT=8080 >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:out" "$dest"
rm -rf "$work"
