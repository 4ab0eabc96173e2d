#!/bin/bash
# Stops the micro cluster that scripts/ceph-micro.sh DIR started, by its pid files (DIR is kept).
set -euo pipefail
D=$(realpath -m "${1:?usage: ceph-micro-stop.sh DIR}")
# true while pid still runs this cluster's daemon: guards against stale pid files / pid reuse, and an
# exited daemon awaiting reaping (zombie, empty cmdline) already counts as gone
ours() { tr "\0" " " 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "-c $D/ceph.conf"; }
# order matters: radosgw hangs ~2 min if its OSD is gone first, the OSD waits 5 s for a dead mon
for n in client.rgw.a osd.0 mon.a; do
  f="$D/run/$n.pid"; [ -f "$f" ] || continue
  p=$(cat "$f"); rm -f "$f"
  ours "$p" || continue
  kill "$p" 2>/dev/null || true
  for i in $(seq 1 100); do ours "$p" || break; sleep 0.05; done
  if ours "$p"; then kill -9 "$p" 2>/dev/null || true; fi
done
