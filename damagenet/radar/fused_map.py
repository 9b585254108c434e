"""``damagenet fuse``'s work: a PWTT T map and a Sentinel-2 probability map of one AOI in, the
training-free fused map out, all or nothing.

Each sensor's statistic is standardised with its own no-change variation and the z-scores are
added (:func:`damagenet.radar.fusion.training_free`), pixel by pixel on the AOI grid:

- radar: ``z = (T - m) / s`` with ``s`` the standard deviation of T in the pre-war null test
  ``damagenet pwtt --null`` ran and recorded in the T map's tags (:mod:`damagenet.radar.null`),
  and ``m`` by default the T map's own median (``--radar-centre map``: like the optical
  default, it assumes most of the AOI did not change), or the null test's mean
  (``--radar-centre null``). The null's level can sit several of its standard deviations off
  the post window's (season, rain between the windows): centred on it, a whole town can come
  out above the threshold; the map's median removes that shift and keeps every ranking;
- optical: the model's probability on the logit scale, ``z = (logit p - m) / s`` with ``m``,
  ``s`` either from the same model's map of a pre-war pair (``--optical-null MAP``: its mean
  and standard deviation, a true no-war null) or, by default, robustly from the map itself
  (median and 1.4826 x MAD over its valid pixels), which assumes that most of the AOI did not
  change: damage on a minority of pixels moves neither much.

Where the optical map has no value (cloud, nodata) its z counts 0, no evidence either way, so
the sum is the radar's alone; where the radar tested nothing, the optics' alone; where neither
saw the pixel it is nodata. ``<aoi>_fused_sensors.tif`` says which case each pixel is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import staged_folder
from damagenet.errors import DamagenetUsageError, GridMismatchError, InputFileError
from damagenet.maps.writers import (
    CLASS,
    CLASS_NODATA,
    PROB,
    PROB_NODATA,
    Layer,
    MapGrid,
    RowWriter,
)
from damagenet.outputs import fused_outputs, pwtt_outputs
from damagenet.qgis.raster_styles import paletted_qml, write_qml
from damagenet.radar import FUSED_THRESHOLD
from damagenet.radar.fusion import NullStats, logit, training_free
from damagenet.radar.null import TAG_MEAN, TAG_SD, TAG_TEST
from damagenet.radar.outputs import (
    RAW_T_LAYER,
    T_LAYER,
    as_float32,
    class_rows,
    t_qml,
    write_summary,
)
from damagenet.radar.quicklook import write_radar_quicklook

log = logging.getLogger(__name__)

#: Damaged where the fused z is above this: about three no-change standard deviations.
DEFAULT_THRESHOLD = FUSED_THRESHOLD
FUSED_LAYER = Layer("fused", "fused_z", "float32", PROB_NODATA)
RADAR_ONLY, OPTICAL_ONLY, BOTH = 1, 2, 3
SENSORS_LAYER = Layer(
    "sensors",
    "fused_sensors",
    "uint8",
    CLASS_NODATA,
    "1 radar only, 2 optical only, 3 radar and optical, 255 neither",
    {
        0: (0, 0, 0, 0),
        RADAR_ONLY: (70, 130, 180, 255),
        OPTICAL_ONLY: (230, 159, 0, 255),
        BOTH: (0, 158, 115, 255),
    },
    {0: "", RADAR_ONLY: "radar only", OPTICAL_ONLY: "optical only", BOTH: "radar and optical"},
)
#: Rows read and written at a time; pixels sampled for the robust optical null.
STRIP_ROWS = 512
NULL_SAMPLE = 4_000_000


@dataclass(frozen=True)
class FuseOptions:
    threshold: float = DEFAULT_THRESHOLD
    #: the same model's probability map of a pre-war pair; None: robust, from the map itself
    optical_null: Path | None = None
    #: where the radar z is centred: "map" (the T map's median) or "null" (the null's mean)
    radar_centre: str = "map"


def _open(path: Path, what: str) -> Any:
    import rasterio

    if not path.is_file():
        raise InputFileError(f"{path}: no such {what}")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot read the {what} ({exc})") from exc


def _description(src: Any) -> str:
    return (src.descriptions[0] or "") if src.descriptions else ""


def radar_null_of(src: Any, path: Path) -> tuple[NullStats, str]:
    """The pre-war null a T map records; refuses any other raster or a map without one."""
    found = _description(src)
    if found not in (T_LAYER.description, RAW_T_LAYER.description):
        raise InputFileError(
            f"{path}: band '{found}' is not a PWTT T map (expected '{T_LAYER.description}' "
            "from 'damagenet pwtt')"
        )
    tags = src.tags()
    if TAG_MEAN not in tags or TAG_SD not in tags:
        raise InputFileError(
            f"{path}: records no pre-war null ({TAG_MEAN}, {TAG_SD} tags); make it with "
            "'damagenet pwtt --null' so T can be standardised with the radar's own variation"
        )
    mean, sd = float(tags[TAG_MEAN]), float(tags[TAG_SD])
    if not (np.isfinite(mean) and sd > 0):
        raise InputFileError(f"{path}: pre-war null mean {mean:g}, sd {sd:g} cannot standardise")
    return NullStats(mean, sd), tags.get(TAG_TEST, "")


def check_probability(src: Any, path: Path) -> None:
    found = _description(src)
    if found != PROB.description:
        raise InputFileError(
            f"{path}: band '{found}' is not a Sentinel-2 damage probability map (expected "
            f"'{PROB.description}' from 'damagenet predict')"
        )
    sample = row_sample(src) if src.dtypes[0] in ("float32", "float64") else None
    if sample is None or (sample.size and (sample.min() < 0 or sample.max() > 1)):
        found = src.dtypes[0] if sample is None else f"{sample.min():g} to {sample.max():g}"
        raise InputFileError(
            f"{path}: values {found}; a probability map holds floats from 0 to 1 (the "
            "output of 'damagenet predict')"
        )


def check_grid(radar: Any, optical: Any, radar_path: Path, optical_path: Path) -> None:
    """Both maps on one grid: same CRS, pixel corners and size."""
    same = (
        radar.crs == optical.crs
        and radar.shape == optical.shape
        and radar.transform.almost_equals(optical.transform)
    )
    if not same:
        raise GridMismatchError(
            f"{optical_path}: {optical.width} x {optical.height} px in {optical.crs} from "
            f"({optical.transform.c:.1f}, {optical.transform.f:.1f}), not on the grid of "
            f"{radar_path} ({radar.width} x {radar.height} px in {radar.crs} from "
            f"({radar.transform.c:.1f}, {radar.transform.f:.1f})); make both maps of the same "
            "AOI with the same grid cap (--max-size-km)"
        )


def read_rows(src: Any, r0: int, r1: int) -> np.ndarray:
    """Rows ``[r0, r1)`` as float64, NaN where nodata."""
    from rasterio.windows import Window

    block = src.read(1, window=Window(0, r0, src.width, r1 - r0), masked=True)
    return np.asarray(block.astype(np.float64).filled(np.nan))


def row_sample(src: Any) -> np.ndarray:
    """The map's finite values on every k-th row, at most about :data:`NULL_SAMPLE` pixels."""
    step = max(1, -(-src.width * src.height // NULL_SAMPLE))
    parts = []
    for r0 in range(0, src.height, STRIP_ROWS):
        rows = read_rows(src, r0, min(r0 + STRIP_ROWS, src.height))
        parts.append(rows[(np.arange(r0, r0 + len(rows)) % step) == 0].ravel())
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


def logit_sample(src: Any) -> np.ndarray:
    """The map's logits on the rows of :func:`row_sample`."""
    x = logit(row_sample(src))
    return x[np.isfinite(x)]


def radar_centred(
    src: Any, path: Path, null: tuple[NullStats, str], centre: str
) -> tuple[NullStats, str]:
    """The radar's z: the null's sd about the T map's median (``map``) or the null's mean."""
    stats, test = null
    how = f"sd of the pre-war null test{f' ({test})' if test else ''}"
    if centre == "null":
        return stats, f"{how}, centred on its mean"
    values = row_sample(src)
    if values.size == 0:
        raise InputFileError(f"{path}: no tested pixel to centre T on")
    median = float(np.median(values))
    return NullStats(median, stats.sd), f"{how}, centred on the map's median T"


def optical_null_of(src: Any, path: Path, prewar: Path | None) -> tuple[NullStats, str]:
    """The optical statistic's null: from a pre-war map, or robustly from the map itself."""
    if prewar is None:
        values, how = logit_sample(src), f"robust (median, 1.4826 MAD) over {path.name} itself"
    else:
        with _open(prewar, "pre-war probability map") as pre:
            check_probability(pre, prewar)
            values, how = logit_sample(pre), f"mean and sd over the pre-war map {prewar.name}"
    try:
        return (NullStats.robust(values) if prewar is None else NullStats.of(values)), how
    except ValueError as exc:
        raise InputFileError(f"{prewar or path}: {exc} (logit probability)") from exc


def fused_rows(
    radar: Any, optical: Any, z_radar: NullStats, z_optical: NullStats
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first row, fused z, sensors code)`` strip by strip."""
    for r0 in range(0, radar.height, STRIP_ROWS):
        r1 = min(r0 + STRIP_ROWS, radar.height)
        zr = z_radar.z(read_rows(radar, r0, r1))
        zo = z_optical.z(logit(read_rows(optical, r0, r1)))
        code = np.isfinite(zr) * RADAR_ONLY + np.isfinite(zo) * OPTICAL_ONLY
        yield r0, training_free([zr, zo]), np.where(code > 0, code, CLASS_NODATA).astype(np.uint8)


def map_tags(
    paths: dict[str, Path], nulls: dict[str, tuple[NullStats, str]], threshold: float
) -> dict[str, str]:
    """What the map is, in every raster's metadata."""
    (zr, r_how), (zo, o_how) = nulls["radar"], nulls["optical"]
    return {
        "PRODUCT": "FUSED radar + optical, training-free z-sum (damagenet)",
        "RADAR_MAP": paths["radar"].name,
        "OPTICAL_MAP": paths["optical"].name,
        "RADAR_NULL": f"mean {zr.mean:.6g}, sd {zr.sd:.6g}: {r_how}",
        "OPTICAL_NULL": f"logit p, centre {zo.mean:.6g}, sd {zo.sd:.6g}: {o_how}",
        "COMBINATION": "z_radar + z_optical; a sensor without a value counts 0",
        "THRESHOLD": f"{threshold:g}",
    }


def write_fused(
    paths: dict[str, Path],
    grid: MapGrid,
    rows: Iterator[tuple[int, np.ndarray, np.ndarray]],
    tags: dict[str, str],
    threshold: float,
    backdrop: Path,
) -> dict[str, int]:
    """Every raster, style and the quick-look of the map (``paths`` staged); pixel counts."""
    layers = {"fused": FUSED_LAYER, "class": CLASS, "sensors": SENSORS_LAYER}
    writers = {
        k: RowWriter(paths[k].with_suffix(".tmp.tif"), grid, v, tags) for k, v in layers.items()
    }
    counts = dict.fromkeys(
        ("radar_only", "optical_only", "both", "pixels_seen", "damaged_pixels"), 0
    )
    try:
        for r0, fused, code in rows:
            cls = class_rows(fused, threshold)
            for key, block in (("fused", as_float32(fused)), ("class", cls), ("sensors", code)):
                writers[key].write(r0, block)
            for key, value in (
                ("radar_only", RADAR_ONLY),
                ("optical_only", OPTICAL_ONLY),
                ("both", BOTH),
            ):
                counts[key] += int((code == value).sum())
            counts["pixels_seen"] += int((cls != CLASS_NODATA).sum())
            counts["damaged_pixels"] += int((cls == 1).sum())
        for key in layers:
            writers[key].to_cog(paths[key], "AVERAGE" if key == "fused" else "NEAREST")
    finally:
        for writer in writers.values():
            writer.close()
    styles_and_quicklook(paths, threshold, backdrop)
    return counts


def styles_and_quicklook(paths: dict[str, Path], threshold: float, backdrop: Path) -> None:
    """QGIS styles beside each raster, and the fused z over the radar's backdrop (if any)."""
    write_qml(paths["fused"], t_qml(FUSED_LAYER.description, threshold))
    for key, layer in (("class", CLASS), ("sensors", SENSORS_LAYER)):
        colours, labels = dict(layer.colours or {}), dict(layer.labels or {})
        write_qml(paths[key], paletted_qml(layer.description, colours, labels))
    write_radar_quicklook(
        paths["fused"],
        backdrop if backdrop.is_file() else None,
        paths["quicklook"],
        threshold,
        "fused z, radar + optical (pre-war VV backscatter behind)",
    )


def fuse_map(pwtt: str | Path, optical: str | Path, out: str | Path, opts: FuseOptions) -> dict:
    """Write the fused map ``out`` and its companions; return the summary."""
    pwtt, optical, out = Path(pwtt), Path(optical), Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise DamagenetUsageError(f"--out {out}: expected a .tif path (e.g. <aoi>_fused.tif)")
    with _open(pwtt, "PWTT T map") as r_src, _open(optical, "probability map") as o_src:
        null = radar_null_of(r_src, pwtt)
        nulls = {"radar": radar_centred(r_src, pwtt, null, opts.radar_centre)}
        check_probability(o_src, optical)
        check_grid(r_src, o_src, pwtt, optical)
        nulls["optical"] = optical_null_of(o_src, optical, opts.optical_null)
        grid = MapGrid(r_src.crs, r_src.transform, r_src.width, r_src.height)
        tags = map_tags({"radar": pwtt, "optical": optical}, nulls, opts.threshold)
        backdrop = pwtt_outputs(pwtt)["backscatter"]
        with staged_folder(out.parent) as tmp:
            staged = fused_outputs(tmp / out.name)
            rows = fused_rows(r_src, o_src, nulls["radar"][0], nulls["optical"][0])
            counts = write_fused(staged, grid, rows, tags, opts.threshold, backdrop)
            px_km2 = abs(grid.transform.a * grid.transform.e) / 1e6
            summary = fused_summary(tags, nulls, counts, px_km2, opts.threshold)
            write_summary(staged["summary"], summary)
    log.info("fuse: %s written (%s)", out, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return summary


def fused_summary(
    tags: dict[str, str],
    nulls: dict[str, tuple[NullStats, str]],
    counts: dict[str, int],
    px_km2: float,
    threshold: float,
) -> dict[str, Any]:
    return {
        **{k.lower(): v for k, v in tags.items()},
        "threshold": threshold,
        "nulls": {k: {"mean": z.mean, "sd": z.sd, "how": how} for k, (z, how) in nulls.items()},
        "pixels": counts,
        "seen_km2": round(counts["pixels_seen"] * px_km2, 4),
        "damaged_km2": round(counts["damaged_pixels"] * px_km2, 4),
    }
