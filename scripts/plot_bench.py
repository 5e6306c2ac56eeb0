#!/usr/bin/env python3
"""Plot throughput (and optionally p99) against client count per server from an oxetcd-bench CSV.

usage: scripts/plot_bench.py RESULTS.csv OUT.png [--workload put] [--split-at UNIX_TIME]
                             [--since UNIX_TIME] [--layout server0-gen1|shared] [--p99]

Reads the rows `oxetcd-bench --csv` appends, keeps one workload, takes the median
`per_second` over the rounds of each (server, clients) pair and draws one line per server
on a log-scaled client axis. With --split-at, rows older than UNIX_TIME are an earlier build:
oxetcd's become a separate "oxetcd (before)" line and etcd's are left out (etcd is drawn
from the newer rows only). --since drops rows older than UNIX_TIME, --layout keeps the rows of
one `layout` column value, --p99 adds a second panel with the median p99 latency.
Needs matplotlib (pip install matplotlib); CI does not run this.
"""
import argparse
import csv
import statistics
import sys
from collections import defaultdict


def load(path, workload, split_at=None, since=None, layout=None, column="per_second"):
    """{server: {clients: [column value, ...]}} for the rows of one workload."""
    series = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] != workload or int(row["errors"]) != 0:
                continue
            if since is not None and int(row["unix_time_s"]) < since:
                continue
            if layout is not None and row.get("layout") != layout:
                continue
            server = row["server"]
            if split_at is not None and int(row["unix_time_s"]) < split_at:
                if server == "etcd":
                    continue
                server = f"{server} (before)"
            series[server][int(row["clients"])].append(float(row[column]))
    return series


def medians(series):
    """{server: [(clients, median per_second), ...]} sorted by client count."""
    return {
        server: sorted((c, statistics.median(v)) for c, v in by_clients.items())
        for server, by_clients in series.items()
    }


def plot(points, workload, out, p99=None):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is not installed: pip install matplotlib")
    if p99:
        fig, (ax, lat) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
        for server in sorted(p99):
            xs = [c for c, _ in p99[server]]
            ys = [r for _, r in p99[server]]
            lat.plot(xs, ys, marker="o", label=server)
            for x, y in zip(xs, ys):
                lat.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        lat.set_xscale("log")
        lat.set_yscale("log")
        lat.set_xlabel("concurrent clients")
        lat.set_ylabel("p99 latency ms (median of rounds)")
        lat.set_title(f"{workload} p99 latency")
        lat.grid(True, which="both", alpha=0.3)
        lat.legend()
    else:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for server in sorted(points):
        xs = [c for c, _ in points[server]]
        ys = [r for _, r in points[server]]
        ax.plot(xs, ys, marker="o", label=server)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel(f"{workload} requests/s (median of rounds)")
    ax.set_title(f"{workload} throughput, single member on loopback")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--workload", default="put")
    parser.add_argument("--split-at", type=int, default=None)
    parser.add_argument("--since", type=int, default=None)
    parser.add_argument("--layout", default=None)
    parser.add_argument("--p99", action="store_true")
    args = parser.parse_args()
    rows = (args.csv, args.workload, args.split_at, args.since, args.layout)
    points = medians(load(*rows))
    p99 = medians(load(*rows, column="p99_ms")) if args.p99 else None
    if not points:
        sys.exit(f"no error-free {args.workload} rows in {args.csv}")
    for server, pts in sorted(points.items()):
        print(server, " ".join(f"{c}:{r:.0f}/s" for c, r in pts))
    plot(points, args.workload, args.png, p99)


if __name__ == "__main__":
    main()
