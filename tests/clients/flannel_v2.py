"""flannel's v2 protocol (etcd-api.md §4) through PyPI python-etcd 0.4.5.

Usage: flannel_v2.py HOST PORT. Prints one line per step; store indexes are printed relative to
the index the script started at, so the lines from etcd 3.4 and oxetcd can be compared.
"""
import json
import sys

import etcd

PREFIX = "/coreos.com/network"
host, port = sys.argv[1], int(sys.argv[2])
c = etcd.Client(host=host, port=port, protocol="http", allow_reconnect=False, read_timeout=30)
base = c.read("/").etcd_index


def rel(i):
    return i - base if i >= base else i


def lease(ip):
    return json.dumps({"PublicIP": ip, "BackendType": "vxlan", "BackendData": {"VtepMAC": "aa"}})


r = c.write(PREFIX + "/config", json.dumps({"Network": "10.5.0.0/16", "SubnetLen": 24}))
print("config", r.action, rel(r.modifiedIndex))
print("config read", c.read(PREFIX + "/config", quorum=True).value)
try:
    c.read(PREFIX + "/subnets", recursive=True, quorum=True)
    print("subnets present")
except etcd.EtcdKeyNotFound as e:
    print("no subnets yet", rel(e.payload["index"]))

acquired = {}
for host_ip, wanted in [("192.0.2.1", "10.5.1.0-24"), ("192.0.2.2", "10.5.1.0-24"),
                        ("192.0.2.3", "10.5.3.0-24")]:
    for candidate in [wanted, "10.5.2.0-24"]:
        try:
            ttl = 2 if host_ip == "192.0.2.3" else 60
            r = c.write(PREFIX + "/subnets/" + candidate, lease(host_ip), ttl=ttl, prevExist=False)
            acquired[host_ip] = (candidate, r.modifiedIndex)
            print("acquire", host_ip, candidate, r.action, r.ttl, rel(r.modifiedIndex))
            break
        except etcd.EtcdAlreadyExist:
            print("taken", host_ip, candidate)

first = acquired["192.0.2.1"][1]
r = c.write(PREFIX + "/subnets/10.5.1.0-24", lease("192.0.2.1"), ttl=60)
print("renew", r.action, r.ttl, r._prev_node.value == lease("192.0.2.1"))

r = c.read(PREFIX + "/subnets", wait=True, recursive=True, waitIndex=first + 1)
print("watch from index", r.action, r.key, rel(r.modifiedIndex))

expiring = acquired["192.0.2.3"][1]
r = c.read(PREFIX + "/subnets/10.5.3.0-24", wait=True, waitIndex=expiring + 1)
print("lease lost", r.action, r.key, r._prev_node.value == lease("192.0.2.3"))

last = c.read(PREFIX + "/subnets", recursive=True).etcd_index
for i in range(1005):
    c.write("/churn", str(i))
try:
    c.read(PREFIX + "/subnets", wait=True, recursive=True, waitIndex=last + 1)
    print("watch did not fail")
except etcd.EtcdEventIndexCleared as e:
    print("history cleared", e.payload["errorCode"])
    listing = c.read(PREFIX + "/subnets", recursive=True, sorted=True)
    print("resync", sorted(n.key for n in listing.leaves))

r = c.delete(PREFIX + "/subnets/10.5.1.0-24")
print("release", r.action, r.key)
print("left", sorted(n.key for n in c.read(PREFIX + "/subnets", recursive=True).leaves))
