"""``damagenet pwtt``'s work: a radar store in, a T map and its companions out, all or nothing.

Needs no checkpoint and no labels, so it maps any AOI the pipeline made a radar store for,
map-only ones included. See :mod:`damagenet.radar.ttest` for the test and
:mod:`damagenet.radar.stream` for how the store is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract import radar
from contract.atomic import staged_folder
from damagenet.errors import DamagenetUsageError, GridMismatchError, InputFileError
from damagenet.maps.writers import MapGrid
from damagenet.outputs import pwtt_outputs
from damagenet.radar import DEFAULT_THRESHOLD
from damagenet.radar.null import RadarNull, radar_null
from damagenet.radar.outputs import write_map, write_summary
from damagenet.radar.quicklook import write_radar_quicklook
from damagenet.radar.smoothing import CIRCLE_RADII_M, MEDIAN_RADIUS_M
from damagenet.radar.speckle import ENL
from damagenet.radar.store import RadarStore, open_radar_store
from damagenet.radar.stream import TestOptions, pwtt_rows, testable
from damagenet.radar.ttest import COMBINE_MAX, COMBINE_STOUFFER, MIN_POST, MIN_PRE

log = logging.getLogger(__name__)
SMOOTHINGS = ("pwtt", "none")


@dataclass
class PwttOptions:
    threshold: float = DEFAULT_THRESHOLD
    smoothing: str = "pwtt"
    welch: bool = False
    stouffer: bool = False
    #: optional built-up raster on the store's grid (nonzero: built), PWTT's urban mask
    built: Path | None = None
    #: rows per strip (rounded up to whole chunk rows of the store)
    strip_rows: int = radar.CHUNK
    #: also run the pre-war null test (:mod:`damagenet.radar.null`) and record its T statistics
    null: bool = False

    def test_options(self) -> TestOptions:
        return TestOptions(
            welch=self.welch,
            combine=COMBINE_STOUFFER if self.stouffer else COMBINE_MAX,
            smoothing=self.smoothing == "pwtt",
        )


def check_testable(store: RadarStore) -> None:
    """Refuse a store where no orbit has enough acquisitions in both windows."""
    if any(testable(s) for s in store.orbits):
        return
    found = ", ".join(
        f"orbit {s.orbit}: {len(s.pre)} pre, {len(s.post)} post" for s in store.orbits
    )
    raise InputFileError(
        f"{store.path}: no relative orbit has {MIN_PRE} acquisitions in the pre window "
        f"{store.pre} and {MIN_POST} in the post window {store.post} ({found}); widen the "
        "windows when building the store ('pipeline radar')"
    )


def built_reader(path: Path, store: RadarStore) -> Callable[[int, int], np.ndarray]:
    """Rows ``[r0, r1)`` of a built-up raster on the store's grid as booleans."""
    import rasterio
    from rasterio.windows import Window

    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot read the built-up mask ({exc})") from exc
    same = (
        src.crs == store.crs
        and src.width == store.width
        and src.height == store.height
        and src.transform.almost_equals(store.transform)
    )
    if not same:
        src.close()
        raise GridMismatchError(
            f"{path}: built-up mask is {src.width} x {src.height} px in {src.crs}, not on the "
            f"radar store's grid ({store.width} x {store.height} px in {store.crs})"
        )

    def rows(r0: int, r1: int) -> np.ndarray:
        block = src.read(1, window=Window(0, r0, store.width, r1 - r0), masked=True)
        return np.asarray(block.filled(0) > 0)

    return rows


def map_tags(store: RadarStore, opts: PwttOptions, null: RadarNull | None = None) -> dict[str, str]:
    """What the map is, in every raster's metadata (no dates of running: reproducible)."""
    attrs = store.attrs()
    return {
        "PRODUCT": "PWTT pixel-wise t-test (Ballinger 2025), damagenet",
        "AOI": attrs.get(radar.ATTR_AOI, ""),
        "RADAR_STORE": store.path.name,
        "RADAR_SOURCE": attrs.get(radar.ATTR_SOURCE, ""),
        "CALIBRATION": attrs.get(radar.ATTR_CALIBRATION, ""),
        "PRE_WINDOW": str(store.pre),
        "POST_WINDOW": str(store.post),
        "SPECKLE_FILTER": f"Lee MMSE 3x3, ENL {ENL:g}",
        "TEST": "welch" if opts.welch else "pooled",
        "ORBIT_COMBINATION": COMBINE_STOUFFER if opts.stouffer else COMBINE_MAX,
        "SMOOTHING": (
            f"focal median {MEDIAN_RADIUS_M:g} m + circular means "
            + "/".join(f"{r:g}" for r in CIRCLE_RADII_M)
            + " m, mean of four"
            if opts.smoothing == "pwtt"
            else "none"
        ),
        "URBAN_MASK": opts.built.name if opts.built else "none",
        "THRESHOLD": f"{opts.threshold:g}",
        **(null.tags() if null else {}),
    }


def _summary(
    store: RadarStore, opts: PwttOptions, counts: dict[str, int], null: RadarNull | None
) -> dict[str, Any]:
    px_km2 = store.pixel_size**2 / 1e6
    return {
        **{k.lower(): v for k, v in map_tags(store, opts).items()},
        "null": null.summary() if null else None,
        "store": store.path.name,
        "aoi": store.attrs().get(radar.ATTR_AOI, ""),
        "threshold": opts.threshold,
        "orbits": [
            {
                "relative_orbit": s.orbit,
                "n_pre": len(s.pre),
                "n_post": len(s.post),
                "tested": testable(s),
            }
            for s in store.orbits
        ],
        "tested_km2": round(counts["tested_pixels"] * px_km2, 4),
        "damaged_km2": round(counts["damaged_pixels"] * px_km2, 4),
        **counts,
    }


def pwtt_map(store_path: str | Path, out: str | Path, opts: PwttOptions) -> dict[str, Any]:
    """Write the T map ``out`` and its companions from the radar store; return the summary."""
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise DamagenetUsageError(f"--out {out}: expected a .tif path (e.g. <aoi>_pwtt.tif)")
    if opts.smoothing not in SMOOTHINGS:
        raise DamagenetUsageError(f"--smoothing must be one of {SMOOTHINGS}, got {opts.smoothing}")
    store = open_radar_store(store_path)
    check_testable(store)
    built = built_reader(opts.built, store) if opts.built else None
    chunk = store.chunk_rows
    strip_rows = -(-max(opts.strip_rows, 1) // chunk) * chunk
    grid = MapGrid(store.crs, store.transform, store.width, store.height)
    started = time.perf_counter()
    null = radar_null(store, opts.test_options(), strip_rows, built) if opts.null else None
    with staged_folder(out.parent) as tmp:
        staged = pwtt_outputs(tmp / out.name)
        rows = pwtt_rows(store, opts.test_options(), strip_rows, built)
        tags = map_tags(store, opts, null)
        counts = write_map(staged["t"], grid, rows, tags, opts.threshold, opts.smoothing == "pwtt")
        write_radar_quicklook(
            staged["t"], staged["backscatter"], staged["quicklook"], opts.threshold
        )
        summary = _summary(store, opts, counts, null)
        write_summary(staged["summary"], summary)
    seconds = time.perf_counter() - started
    km2 = store.width * store.height * store.pixel_size**2 / 1e6
    log.info("pwtt: %s written (%.1f km2 in %.1f s, %.1f km2/s)", out, km2, seconds, km2 / seconds)
    return summary
