"""The scene pair a map is drawn from, and the probability of every window, strip by strip.

Scenes come as GeoTIFF paths (read in row strips with rasterio) or as dask-backed
``xarray.DataArray`` scenes (as the STAC source produces them). Either way each strip of windows
is scored by the same function, :func:`score_strip`; with a dask.distributed scheduler the
strips (each with its halo of ``size - stride`` rows shared with the next) become dask tasks
run on the cluster's workers, and their results are taken back in order, so the map is the
same, byte for byte, as the one computed in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor of xarray scenes
import xarray as xr
from rasterio.enums import Resampling
from rasterio.windows import Window

from contract.bands import BANDS, SCENE_NODATA
from contract.processing_level import TAG as LEVEL_TAG
from contract.windows import Strip, gather_windows, nodata_pixels, plan_strips, window_any
from damagenet.errors import GridMismatchError, InputFileError
from damagenet.maps.writers import MapGrid

if TYPE_CHECKING:
    from damagenet.inference.map_scoring import WindowScorer

#: rows per dask chunk when the scenes are opened for a cluster
CHUNK_ROWS = 512


@dataclass
class ScenePair:
    """Before and after scenes on one grid: their sources, grid, AOI and (lazy) arrays."""

    before_source: Path | str
    after_source: Path | str
    grid: MapGrid
    aoi: str | None
    #: dask-backed (band, y, x) arrays; None when the scenes are read from files
    arrays: tuple[Any, Any] | None = None
    #: processing level (L1C, L2A) of the before and after scenes from their tags; None: untagged
    levels: tuple[str | None, str | None] = (None, None)

    def after_rgb(self, shape: tuple[int, int], bands: tuple[str, ...]) -> np.ndarray:
        """The after scene's ``bands`` (e.g. B04, B03, B02) decimated to ``shape``."""
        idx = [BANDS.index(b) for b in bands]
        if self.arrays is None:
            with rasterio.open(self.after_source) as src:
                return src.read(
                    [i + 1 for i in idx],
                    out_shape=(len(idx), *shape),
                    resampling=Resampling.average,
                )
        step = max(1, -(-self.grid.height // shape[0]), -(-self.grid.width // shape[1]))
        return as_digital_numbers(np.asarray(self.arrays[1].data[idx, ::step, ::step].compute()))


def _describe_file(path: Path) -> dict[str, Any]:
    try:
        with rasterio.open(path) as src:
            return {
                "crs": src.crs,
                "transform": src.transform,
                "width": src.width,
                "height": src.height,
                "count": src.count,
                "descriptions": src.descriptions,
                "aoi": src.tags().get("AOI"),
                "level": src.tags().get(LEVEL_TAG),
            }
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot open raster ({exc})") from exc


def _describe_array(scene: Any) -> dict[str, Any]:
    names = scene.attrs.get("long_name")
    names = (names,) if isinstance(names, str) else tuple(names or ())
    return {
        "crs": scene.rio.crs,
        "transform": scene.rio.transform(),
        "width": int(scene.rio.width),
        "height": int(scene.rio.height),
        "count": int(scene.shape[0]),
        "descriptions": names or (None,) * scene.shape[0],
        "aoi": scene.attrs.get("AOI"),
        "level": scene.attrs.get(LEVEL_TAG),
    }


def _source_name(scene: Any) -> str:
    return str(scene.encoding.get("source") or scene.name or "dask array")


def _check(profiles: dict[str, dict[str, Any]], names: dict[str, str], size: int) -> None:
    ref = profiles["before"]
    for name, prof in profiles.items():
        for key in ("crs", "transform", "width", "height"):
            if prof[key] != ref[key]:
                raise GridMismatchError(
                    f"{names[name]} ({name}) is not on the grid of "
                    f"{names['before']}: {key} {prof[key]} vs {ref[key]}"
                )
    for name in ("before", "after"):
        prof = profiles[name]
        if prof["count"] != len(BANDS):
            raise InputFileError(
                f"{names[name]}: {prof['count']} bands, the checkpoint needs "
                f"{len(BANDS)} ({', '.join(BANDS)})"
            )
        desc = [d for d in prof["descriptions"] if d]
        if desc and list(prof["descriptions"]) != list(BANDS):
            raise InputFileError(
                f"{names[name]}: bands are {list(prof['descriptions'])}, "
                f"scenes must hold {list(BANDS)} in that order"
            )
    if ref["crs"] is None:
        raise InputFileError(f"{names['before']}: raster has no CRS")
    if size > ref["width"] or size > ref["height"]:
        raise InputFileError(
            f"the checkpoint's patch size {size} px exceeds the scene "
            f"{names['before']} ({ref['width']} x {ref['height']} px)"
        )


def open_scene_pair(
    before: Any, after: Any, labels: Path | None, size: int, lazy: bool = False
) -> ScenePair:
    """Check the pair (and labels) share one grid and hold the four bands; describe it.

    Paths are opened as dask arrays when ``lazy`` (a cluster reads them in chunks).
    """
    scenes = {"before": before, "after": after}
    if all(isinstance(s, (str, Path)) for s in scenes.values()):
        paths = {k: Path(v) for k, v in scenes.items()}
        profiles = {k: _describe_file(p) for k, p in paths.items()}
        names = {k: str(p) for k, p in paths.items()}
        arrays = tuple(_lazy(p) for p in paths.values()) if lazy else None
        sources: dict[str, Path | str] = dict(paths)
    else:
        profiles = {k: _describe_array(s) for k, s in scenes.items()}
        names = {k: _source_name(s) for k, s in scenes.items()}
        sources = dict(names)
        arrays = (before, after)
    if labels is not None:
        profiles["labels"] = _describe_file(labels)
        if profiles["labels"]["count"] != 1:
            raise InputFileError(
                f"{labels}: {profiles['labels']['count']} bands; a label raster has one "
                "(1 damage, 0 no damage, 255 unknown: 'pipeline labels' or 'pipeline oscd')"
            )
        profiles["labels"]["count"] = len(BANDS)  # one band; only the grid is compared
        profiles["labels"]["descriptions"] = ()
        names["labels"] = str(labels)
    _check(profiles, names, size)
    ref = profiles["before"]
    grid = MapGrid(ref["crs"], ref["transform"], ref["width"], ref["height"])
    aoi = profiles["after"]["aoi"] or profiles["before"]["aoi"]
    levels = (profiles["before"]["level"], profiles["after"]["level"])
    return ScenePair(sources["before"], sources["after"], grid, aoi, arrays, levels)


def _lazy(path: Path) -> Any:
    return xr.open_dataarray(
        path, engine="rasterio", mask_and_scale=False, chunks={"band": -1, "y": CHUNK_ROWS, "x": -1}
    )


def as_digital_numbers(scene: np.ndarray) -> np.ndarray:
    """A strip as uint16 DNs with nodata 0, as the model and the nodata test expect.

    xarray opens rasters masked by default: float with NaN where nodata. The DNs are whole
    numbers, so casting back after setting NaN to the scene nodata loses nothing.
    """
    if np.issubdtype(scene.dtype, np.floating):
        scene = np.where(np.isnan(scene), SCENE_NODATA, scene).astype(np.uint16)
    return scene


def score_strip(
    before: np.ndarray,
    after: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    size: int,
    scorer: WindowScorer,
) -> np.ndarray:
    """(window rows, window cols, layers) scores of one strip (rows relative to it); NaN where
    nodata.

    ``scorer`` returns (windows, layers): 1 layer for a model, 2 for an ensemble (mean, spread)
    (:class:`damagenet.inference.map_scoring.Layered`).
    """
    before, after = as_digital_numbers(before), as_digital_numbers(after)
    bad = window_any(nodata_pixels(before, after), rows, cols, size)
    prob = np.full((*bad.shape, scorer.layers), np.nan)
    ri, ci = np.nonzero(~bad)
    if len(ri):
        prob[ri, ci] = scorer(
            gather_windows(before, rows[ri], cols[ci], size),
            gather_windows(after, rows[ri], cols[ci], size),
        )
    return prob


def strip_probabilities(
    scenes: ScenePair,
    rows: np.ndarray,
    cols: np.ndarray,
    size: int,
    scorer: WindowScorer,
    per_strip: int,
    scheduler: str | None = None,
) -> Iterator[tuple[Strip, int, np.ndarray]]:
    """``(strip, next strip's first row, window probabilities)`` for every strip, in order."""
    strips = list(plan_strips(rows, size, per_strip))
    next_tops = [s.top for s in strips[1:]] + [scenes.grid.height]
    if scheduler is not None:
        results = _on_cluster(scenes, strips, cols, size, scorer, scheduler)
    elif scenes.arrays is not None:
        b, a = scenes.arrays
        results = (
            score_strip(
                np.asarray(b.data[:, s.top : s.bottom, :].compute()),
                np.asarray(a.data[:, s.top : s.bottom, :].compute()),
                s.local_rows,
                cols,
                size,
                scorer,
            )
            for s in strips
        )
    else:
        results = _from_files(scenes, strips, cols, size, scorer)
    yield from zip(strips, next_tops, results, strict=True)


def _from_files(
    scenes: ScenePair, strips: list[Strip], cols: np.ndarray, size: int, scorer: WindowScorer
) -> Iterator[np.ndarray]:
    with rasterio.open(scenes.before_source) as sb, rasterio.open(scenes.after_source) as sa:
        for s in strips:
            win = Window(0, s.top, scenes.grid.width, s.height)
            yield score_strip(
                sb.read(window=win), sa.read(window=win), s.local_rows, cols, size, scorer
            )


def _on_cluster(
    scenes: ScenePair,
    strips: list[Strip],
    cols: np.ndarray,
    size: int,
    scorer: WindowScorer,
    address: str,
) -> Iterator[np.ndarray]:
    """Each strip a dask task on the cluster; results gathered in strip order."""
    import dask  # only with --dask-scheduler: distributed is a heavy import
    from distributed import Client

    assert scenes.arrays is not None, "scenes are opened lazily for a cluster"
    before, after = scenes.arrays
    with Client(address) as client:
        remote = client.scatter(scorer, broadcast=True, hash=False)
        tasks = [
            dask.delayed(score_strip)(
                before.data[:, s.top : s.bottom, :],
                after.data[:, s.top : s.bottom, :],
                s.local_rows,
                cols,
                size,
                remote,
            )
            for s in strips
        ]
        futures = client.compute(tasks)
        for future in futures:
            yield future.result()
