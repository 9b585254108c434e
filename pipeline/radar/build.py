"""``pipeline radar`` as a function: choose the source, gather the series, write the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.aoi import AOI, DateWindow
from pipeline.errors import PipelineUsageError
from pipeline.grid import Grid, aoi_grid
from pipeline.radar import SOURCES
from pipeline.radar.series import (
    Acquisition,
    check_windows,
    default_post,
    default_pre,
    in_window,
    require_both,
    window_text,
)
from pipeline.radar.stac import RadarStacOptions
from pipeline.radar.store import write_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRadarOptions:
    """What local files cannot always say about themselves (asked, never guessed)."""

    scale: str | None = None  # RTC GeoTIFFs: power | amplitude | db
    calibration: str | None = None  # RTC GeoTIFFs: gamma0_terrain_corrected | sigma0
    orbit: int | None = None  # RTC GeoTIFFs: relative orbit when tags and names lack it
    orbit_state: str | None = None
    noise: bool = True  # SAFE: remove thermal noise


@dataclass(frozen=True)
class RadarRequest:
    """One AOI's store: where it goes, which windows, which source and its options."""

    out: Path
    source: str = "stac"
    input: Path | None = None
    pre: DateWindow | None = None
    post: DateWindow | None = None
    max_size_km: float | None = None
    seed: int = 0
    workers: int = 4
    stac: RadarStacOptions = field(default_factory=RadarStacOptions)
    local: LocalRadarOptions = field(default_factory=LocalRadarOptions)


def _gather(
    aoi: AOI, req: RadarRequest, grid: Grid, windows: list[DateWindow]
) -> tuple[list[Acquisition], str, dict[str, Any]]:
    if req.source == "stac":
        from pipeline.radar.stac import stac_series

        return stac_series(aoi, grid, windows, req.stac)
    if req.source == "synthetic":
        from pipeline.radar.synthetic import synthetic_series

        return synthetic_series(aoi, grid, windows, req.input, req.seed)
    if req.input is None:
        raise PipelineUsageError("--source local needs --input (SAFE products or RTC GeoTIFFs)")
    from pipeline.radar.local import local_series

    return local_series(req.input, grid, req.local)


def build_radar(aoi: AOI, req: RadarRequest) -> Path:
    """Write ``req.out`` and its items record; return the store's path."""
    if req.source not in SOURCES:
        raise PipelineUsageError(f"source must be one of {SOURCES}, got {req.source!r}")
    pre = req.pre or default_pre()
    post = req.post or default_post(aoi)
    check_windows(pre, post)
    max_km = req.max_size_km
    if req.source == "synthetic" and max_km is None:
        from pipeline.synthetic.town import DEFAULT_MAX_SIZE_KM

        max_km = DEFAULT_MAX_SIZE_KM  # the optical bed's default, so both share a grid
    grid = aoi_grid(aoi, max_km)
    found, calibration, record = _gather(aoi, req, grid, [pre, post])
    series = [a for a in found if in_window(a.start, pre) or in_window(a.start, post)]
    where = str(req.input or record.get("service") or req.source)
    require_both(series, pre, post, where)
    record = {
        **record,
        "aoi": aoi.slug,
        "source": req.source,
        "calibration": calibration,
        "pre_window": window_text(pre),
        "post_window": window_text(post),
        "grid": grid.describe(),
        "acquisitions": [
            {
                "start": a.start.isoformat(),
                "relative_orbit": a.orbit,
                "orbit_state": a.orbit_state,
                "platform": a.platform,
                "items": list(a.items),
            }
            for a in sorted(series, key=lambda a: (a.start, a.orbit))
        ],
    }
    return write_store(
        req.out,
        series,
        grid,
        calibration=calibration,
        source=req.source,
        aoi=aoi.slug,
        pre=pre,
        post=post,
        record=record,
        workers=req.workers,
    )
