"""PyPI etcd3 (kragniz, gRPC) logging in with user/password against an auth-enabled server:
alice may read and write the prefix /a/ only. Prints one line per step; the test compares the
lines from etcd and from oxetcd. Needs PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python.
etcd3 0.12 sends the token as gRPC call credentials, which current grpcio refuses to send over
a plaintext channel: after a successful login, calls fail in the client ("Established channel
does not have a sufficient security level...") against etcd and oxetcd alike.
Usage: etcd3_auth_smoke.py HOST PORT"""

import sys

import etcd3


def outcome(call):
    """The call's result, or the error's class, gRPC code and text."""
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - the class is what is compared
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        return (type(e).__name__, str(code), details)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])

    def say(*parts: object) -> None:
        print(*parts, flush=True)

    c = etcd3.client(host=host, port=port, timeout=10, user="alice", password="alicepw")
    say("put allowed", outcome(lambda: c.put("/a/x", "1") and None))
    say("get allowed", outcome(lambda: c.get("/a/x")[0]))
    say("put forbidden", outcome(lambda: c.put("/z", "1") and None))
    say("get forbidden", outcome(lambda: c.get("/z")[0]))
    say("prefix allowed", outcome(lambda: sorted(v for v, _ in c.get_prefix("/a/"))))
    say("delete forbidden", outcome(lambda: c.delete("/z")))
    say("wrong password", outcome(
        lambda: etcd3.client(host=host, port=port, timeout=10, user="alice", password="nope")))
    anon = etcd3.client(host=host, port=port, timeout=10)
    say("no login", outcome(lambda: anon.get("/a/x")[0]))


if __name__ == "__main__":
    main()
