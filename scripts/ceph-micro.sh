#!/bin/bash
# One-node Ceph micro cluster for imsflow tests: 1 mon + 1 memstore OSD + 1 radosgw (S3),
# loopback only, cephx on. Debian ceph packages (bookworm 16.2.x; trixie 18.2.x, sid 20.2.x).
# usage: scripts/ceph-micro.sh DIR [RGW_PORT]   (env: S3_ACCESS_KEY, S3_SECRET_KEY, MON_PORT)
# Writes DIR/env.sh with the IMSFLOW_TEST_* variables; stop with scripts/ceph-micro-stop.sh DIR.
set -euo pipefail
D=$(realpath -m "${1:?usage: ceph-micro.sh DIR [PORT]}"); PORT=${2:-7480}; MON_PORT=${MON_PORT:-6789}
AK=${S3_ACCESS_KEY:-AKIATEST}; SK=${S3_SECRET_KEY:-SECRETTEST}
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$D" != / ] || { echo "refusing DIR=/" >&2; exit 2; }

# install packages once (about 20 s, ~270 MB)
if ! command -v radosgw >/dev/null; then
  . "$HERE/apt.sh"
  apt_install radosgw ceph-mon ceph-osd ceph-common
fi

# a cluster may still run from DIR: stop it (by its pid files) before wiping DIR
if compgen -G "$D/run/*.pid" >/dev/null; then "$HERE/ceph-micro-stop.sh" "$D"; fi

# fail clearly, before touching DIR, if another process holds our ports
for p in "$PORT" "$MON_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "ceph-micro: port $p is in use (another cluster?). Stop it, or choose other ports: ceph-micro.sh DIR RGW_PORT with MON_PORT=..." >&2
    exit 1
  fi
done

rm -rf "$D"; mkdir -p "$D"/{run,log,mon,osd/ceph-0,rgw,crash}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon_host = 127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr2 = false
ms_bind_ipv6 = false
run_dir = $D/run
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
pid_file = $D/run/\$name.pid
crash_dir = $D/crash
keyring = $D/keyring
# one OSD: size-1 pools, fixed small pg counts (autoscaler off), generous pg cap
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
# the mon refuses to start below this share of free space on DIR's filesystem (default
# 5%: 12 GB of a 250 GB disk); a throwaway test store needs megabytes
mon_data_avail_crit = 1
osd_crush_chooseleaf_type = 0
[mon]
mon_data = $D/mon/\$cluster-\$id
mon_allow_pool_delete = true
# commit osdmap changes (pool creation) faster than the 1 s default: ready in ~2 s instead of ~12 s
paxos_propose_interval = 0.1
[osd]
osd_data = $D/osd/\$cluster-\$id
keyring = $D/osd/\$cluster-\$id/keyring
# data lives in RAM, capped (default 10 GiB: room for the benchmarks on a 24 GiB machine;
# a full memstore blocks writes instead of failing them, see sim/src/testing.rs)
osd_objectstore = memstore
memstore_device_bytes = ${CEPH_MEMSTORE_BYTES:-10737418240}
[client.admin]
# no admin socket for CLI tools: parallel radosgw-admin runs (one per test) would fight over one path
admin_socket =
[client.rgw.a]
# tcp_nodelay: beast leaves Nagle on, and a response whose body follows its
# headers in a second write then waits for the client's delayed ACK (40 ms on
# Linux): every small GET (a manifest, a listing) took 45 ms instead of 2
rgw_frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw_dns_name = localhost
rgw_data = $D/rgw
# reclaim deleted tail objects quickly (memstore keeps data in RAM)
rgw_gc_obj_min_wait = 60
rgw_gc_processor_period = 60
CONF
C="-c $D/ceph.conf"
K="$D/keyring"
# cephx stays ON: with auth off, starts raced ("wrong fsid") about 1 in 3
ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
monmaptool --create --add a "127.0.0.1:$MON_PORT" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$D/monmap" --keyring "$K"
if ! ceph-mon $C -i a; then
  echo "ceph-micro: ceph-mon did not start; the end of $D/log/mon.a.log:" >&2
  tail -n 5 "$D/log/mon.a.log" >&2 || true
  df -h "$D" | tail -n 1 | awk '{print "ceph-micro: free space on " $6 ": " $4 " (" $5 " used); the mon needs 1% free"}' >&2
  exit 1
fi
# wait for quorum before `ceph osd new`
for i in $(seq 1 100); do ceph $C --connect-timeout 5 mon stat >/dev/null 2>&1 && break; sleep 0.2; done
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph $C osd new "$OSD_UUID")
ceph $C auth get-or-create "osd.$OSD_ID" mon 'allow profile osd' osd 'allow *' mgr 'allow profile osd' \
  -o "$D/osd/ceph-$OSD_ID/keyring"
ceph-osd $C -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" 2>>"$D/log/osd-mkfs.log"
ceph-osd $C -i "$OSD_ID"
radosgw $C -n client.rgw.a
# wait for the S3 port, then create the admin S3 user
for i in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
radosgw-admin $C user create --uid=test --display-name=test --access-key="$AK" --secret-key="$SK" >/dev/null

cat > "$D/env.sh" <<ENV
export IMSFLOW_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
export IMSFLOW_TEST_CEPH_CONF=$D/ceph.conf
export IMSFLOW_TEST_S3_ACCESS_KEY=$AK
export IMSFLOW_TEST_S3_SECRET_KEY=$SK
ENV
echo "ready: http://127.0.0.1:$PORT conf=$D/ceph.conf env=$D/env.sh"
