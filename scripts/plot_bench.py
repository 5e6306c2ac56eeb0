#!/usr/bin/env python3
"""Plot put throughput against client count for each server from an oxetcd-bench CSV.

usage: scripts/plot_bench.py RESULTS.csv OUT.png [--workload put] [--split-at UNIX_TIME]

Reads the rows `oxetcd-bench --csv` appends, keeps one workload, takes the median
`per_second` over the rounds of each (server, clients) pair and draws one line per server
on a log-scaled client axis. With --split-at, rows older than UNIX_TIME are an earlier build:
oxetcd's become a separate "oxetcd (before)" line and etcd's are left out (etcd is drawn
from the newer rows only). Needs matplotlib (pip install matplotlib); CI does not run this.
"""
import argparse
import csv
import statistics
import sys
from collections import defaultdict


def load(path, workload, split_at=None):
    """{server: {clients: [per_second, ...]}} for the rows of one workload."""
    series = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] != workload or int(row["errors"]) != 0:
                continue
            server = row["server"]
            if split_at is not None and int(row["unix_time_s"]) < split_at:
                if server == "etcd":
                    continue
                server = f"{server} (before)"
            series[server][int(row["clients"])].append(float(row["per_second"]))
    return series


def medians(series):
    """{server: [(clients, median per_second), ...]} sorted by client count."""
    return {
        server: sorted((c, statistics.median(v)) for c, v in by_clients.items())
        for server, by_clients in series.items()
    }


def plot(points, workload, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is not installed: pip install matplotlib")
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
    args = parser.parse_args()
    points = medians(load(args.csv, args.workload, args.split_at))
    if not points:
        sys.exit(f"no error-free {args.workload} rows in {args.csv}")
    for server, pts in sorted(points.items()):
        print(server, " ".join(f"{c}:{r:.0f}/s" for c, r in pts))
    plot(points, args.workload, args.png)


if __name__ == "__main__":
    main()
