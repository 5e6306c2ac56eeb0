"""etcd3gw (PyPI, the OpenStack gateway client) against one server: put/get, prefixes,
compare-and-swap, leases with keep-alive, watches, locks. Prints one line per step; the test
compares the lines from etcd and from oxetcd. Usage: etcd3gw_smoke.py HOST PORT"""

import sys

import etcd3gw


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    c = etcd3gw.client(host=host, port=port, timeout=10)

    def say(*parts: object) -> None:
        print(*parts, flush=True)

    say("api_path", c.api_path)
    say("put", c.put("/gw/a", "1"))
    say("get", c.get("/gw/a"))
    say("get missing", c.get("/gw/none"))
    say("create existing", c.create("/gw/a", "2"))
    say("create new", c.create("/gw/b", "2"))
    say("replace ok", c.replace("/gw/a", "1", "3"))
    say("replace stale", c.replace("/gw/a", "1", "4"))
    say("prefix", sorted((v, m["key"]) for v, m in c.get_prefix("/gw/")))

    lease = c.lease(ttl=30)
    say("put leased", c.put("/gw/l", "x", lease=lease))
    say("lease keys", lease.keys())
    say("lease ttl in range", 0 < lease.ttl() <= 30)
    say("lease refresh in range", 0 < lease.refresh() <= 30)
    say("lease revoke", lease.revoke())
    say("leased key after revoke", c.get("/gw/l"))

    # Watch from the next revision, so that the put below is seen whenever the watch starts.
    start = int(c.status()["header"]["revision"]) + 1
    events, cancel = c.watch_prefix("/gw/w", start_revision=start)
    c.put("/gw/w1", "v")
    c.delete("/gw/w1")
    for i, ev in enumerate(events):
        kv = ev["kv"]
        say("event", ev.get("type", "PUT"), kv["key"], kv.get("value", b""),
            int(kv["mod_revision"]) - start)
        if i == 1:
            break
    cancel()

    lock = c.lock("gwlock", ttl=30)
    say("lock acquire", lock.acquire())
    say("lock held", lock.is_acquired())
    other = c.lock("gwlock", ttl=30)
    say("second acquire while held", other.acquire())
    say("lock refresh in range", 0 < lock.refresh() <= 30)
    say("lock release", lock.release())
    say("second acquire after release", other.acquire())
    say("second release", other.release())

    say("members", len(c.members()))
    say("delete_prefix", c.delete_prefix("/gw/"))
    say("prefix after delete", c.get_prefix("/gw/"))


if __name__ == "__main__":
    main()
