"""Helpers shared by the benchmark scripts: big synthetic rasters written window by window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

OUT = Path(__file__).resolve().parent / "out"
CRS = "EPSG:32636"
TRANSFORM = Affine(10, 0, 300000, 0, -10, 5600000)


def big_pair(size: int, folder: Path = OUT) -> dict[str, Path]:
    """A before/after/labels triple of ``size`` x ``size`` px, written in strips (cached)."""
    folder = folder / f"pair_{size}"
    paths = {k: folder / f"{k}.tif" for k in ("before", "after", "labels")}
    if all(p.exists() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    common = dict(
        driver="GTiff",
        width=size,
        height=size,
        crs=CRS,
        transform=TRANSFORM,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with (
        rasterio.open(paths["before"], "w", count=4, dtype="uint16", nodata=0, **common) as b,
        rasterio.open(paths["after"], "w", count=4, dtype="uint16", nodata=0, **common) as a,
        rasterio.open(paths["labels"], "w", count=1, dtype="uint8", nodata=255, **common) as lab,
    ):
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            win = Window(0, r0, size, h)
            base = rng.integers(300, 3000, size=(4, h, size), dtype=np.uint16)
            b.write(base, window=win)
            a.write(base + rng.integers(0, 200, size=base.shape, dtype=np.uint16), window=win)
            labels = (rng.random((h, size)) < 0.003).astype(np.uint8)
            labels[:, : size // 20] = 255  # a strip of unassessed ground
            lab.write(labels, 1, window=win)
        for ds in (a, b):
            ds.descriptions = ("B02", "B03", "B04", "B08")
    return paths


# VmHWM is this process's own high-water mark; ru_maxrss would carry the parent's across exec
PEAK = """
import json
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"peak_mib": int(hwm.split()[1]) / 1024}))
"""


def run_child(code: str) -> tuple[list[dict], float]:
    """Run Python code in a fresh process; return its JSON lines and its own peak RSS (MiB)."""
    proc = subprocess.run([sys.executable, "-c", code + PEAK], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]["peak_mib"]


def baseline_rss(modules: str) -> float:
    """Peak RSS of a process that only imports ``modules`` (the floor of any measurement)."""
    return run_child(f"import {modules}\n")[1]
