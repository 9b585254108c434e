"""Patch cutting throughput and peak memory on a 5,000 x 5,000 px scene pair.

Usage: python benchmarks/patches.py [--size 5000] [--memory-mb 256]
Prints patch pairs per second and the peak resident memory of the cutting process.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, baseline_rss, big_pair, run_child  # noqa: E402

CHILD = """
import json, time
from pipeline.patches import cut_patches
t = time.perf_counter()
c = cut_patches("bench", {before!r}, {after!r}, {labels!r}, {out!r}, memory_mb={mb},
                progress=False)
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "kept": c.damaged + c.no_damage, "candidates": c.candidates}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=5000, help="scene side in px")
    parser.add_argument(
        "--memory-mb",
        type=float,
        nargs="+",
        default=[64.0, 256.0],
        help="memory budgets to measure",
    )
    args = parser.parse_args()
    paths = big_pair(args.size)
    scene_mb = args.size * args.size * (4 * 2 * 2 + 1) / 2**20
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"scene pair {args.size} x {args.size} px; both scenes and labels uncompressed: "
        f"{scene_mb:.0f} MiB"
    )
    print(
        f"floor: importing the pipeline alone peaks at {baseline_rss('pipeline.patches'):.0f} MiB"
    )
    for mb in args.memory_mb:
        out = OUT / f"patches_{args.size}_{int(mb)}.npz"
        code = CHILD.format(
            before=str(paths["before"]),
            after=str(paths["after"]),
            labels=str(paths["labels"]),
            out=str(out),
            mb=mb,
        )
        (r,), peak = run_child(code)
        print(
            f"budget {mb:6.0f} MiB: {r['candidates']} windows, {r['kept']} pairs kept in "
            f"{r['seconds']:.1f} s = {r['kept'] / r['seconds']:,.0f} pairs/s "
            f"({r['candidates'] / r['seconds']:,.0f} windows/s); peak RSS {peak:.0f} MiB"
        )
        out.unlink()


if __name__ == "__main__":
    main()
