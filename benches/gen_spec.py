#!/usr/bin/env python3
"""Writes an image spec of about SIZE_MB uncompressed: a base layer of many small files,
a layer of a few large binaries, an application layer owned by a non-root user (the
`COPY --chown` pattern: many small files and some executables), and a config layer.

usage: gen_spec.py SIZE_MB > spec.toml
"""
import sys

size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
total = size_mb * 1024 * 1024
out = []
w = out.append

w('[image]\ncreated = "2024-06-01T00:00:00Z"\n')
w('[config]\nUser = "app"\nEnv = ["PORT=80"]\nExposedPorts = ["80/tcp"]\nCmd = ["/app/bin/server"]\n')

def entry(path, **kw):
    w("[[layer.entry]]")
    w(f'path = "{path}"')
    for k, v in kw.items():
        if isinstance(v, str):
            w(f'{k} = "{v}"')
        else:
            w(f"{k} = {v}")

# Layer 1: base, 30% of the size in small files (4-40 KiB).
w("[[layer]]")
entry("/etc/passwd", text="root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/app:/bin/sh\\n")
entry("/etc/group", text="root:x:0:\\napp:x:1000:\\n")
budget, i = total * 30 // 100, 0
while budget > 0:
    n = 4096 + (i * 7919) % (36 * 1024)
    entry(f"/usr/lib/base/d{i // 100}/f{i}.txt", size=n, seed=i + 1)
    budget -= n
    i += 1

# Layer 2: large binaries, 40%.
w("[[layer]]")
budget, j = total * 40 // 100, 0
while budget > 0:
    n = min(budget, 12 * 1024 * 1024)
    entry(f"/usr/bin/big{j}", size=n, mode=0o755, seed=100000 + j)
    budget -= n
    j += 1

# Layer 3: the application, owned by app (30%): executables, libraries, small files.
w("[[layer]]")
for d in ["/app", "/app/bin", "/app/lib", "/app/static", "/app/cache"]:
    entry(d, type="dir", uid=1000, gid=1000)
entry("/app/bin/server", size=4 * 1024 * 1024, mode=0o755, uid=1000, gid=1000, seed=7)
entry("/app/lib/libapp.so.1", size=2 * 1024 * 1024, uid=1000, gid=1000, seed=8)
budget, k = total * 30 // 100 - 6 * 1024 * 1024, 0
while budget > 0:
    n = 2048 + (k * 104729) % (20 * 1024)
    entry(f"/app/static/s{k // 200}/a{k}.js", size=n, uid=1000, gid=1000, seed=200000 + k)
    budget -= n
    k += 1

# Layer 4: configuration.
w("[[layer]]")
entry("/etc/app.conf", text="listen 80\\n")

print("\n".join(out))
