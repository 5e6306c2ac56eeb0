"""etcd3gw (PyPI, the JSON gateway client) against an auth-enabled server: it has no login of
its own, so the token from /v3/auth/authenticate goes in its HTTP session's Authorization
header, as its users do; alice may read and write the prefix /a/ only. Prints one line per
step; the test compares the lines from etcd and from oxetcd. Usage: etcd3gw_auth_smoke.py HOST PORT"""

import json
import sys

import etcd3gw


def outcome(call):
    """The call's result, or the error's class, HTTP reason, gRPC code and text."""
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - the class is what is compared
        try:
            body = json.loads(e.detail_text)
            return (type(e).__name__, str(e), body.get("code"), body.get("message"))
        except (ValueError, IndexError, AttributeError, TypeError):
            return (type(e).__name__, str(e))


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    c = etcd3gw.client(host=host, port=port, timeout=10)

    def say(*parts: object) -> None:
        print(*parts, flush=True)

    login = c.get_url("/auth/authenticate")
    say("wrong password", outcome(lambda: c.post(login, json={"name": "alice", "password": "x"})))
    say("no token", outcome(lambda: c.get("/a/x")))
    token = c.post(login, json={"name": "alice", "password": "alicepw"})["token"]
    say("token issued", bool(token))
    c.session.headers["Authorization"] = token
    say("put allowed", outcome(lambda: c.put("/a/x", "1")))
    say("get allowed", outcome(lambda: c.get("/a/x")))
    say("put forbidden", outcome(lambda: c.put("/z", "1")))
    say("get forbidden", outcome(lambda: c.get("/z")))
    say("create allowed", outcome(lambda: c.create("/a/y", "2")))
    say("prefix allowed", outcome(lambda: sorted(v for v, _ in c.get_prefix("/a/"))))
    c.session.headers["Authorization"] = "not-a-token"
    say("bad token", outcome(lambda: c.get("/a/x")))


if __name__ == "__main__":
    main()
