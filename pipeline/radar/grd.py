"""Sentinel-1 GRD to calibrated sigma0 on the AOI grid: read through GCPs, calibrated first.

A GRD measurement is detected amplitude (uint16 digital numbers) in radar geometry, tied to the
ground only by a grid of ground control points; its calibration is range-dependent. So the
order matters: find the window of the slice that covers the AOI (through the GCPs), read only
that window, calibrate it in radar geometry with the product's own annotation,

    sigma0 = max(DN^2 - eta, 0) / A^2,      clipped below at :data:`NOISE_FLOOR`,

(``A`` the ``sigmaNought`` look-up table of the calibration XML, ``eta`` the thermal noise of the
noise XML, range vector times azimuth vector since IPF 2.9, range vector alone before), and only
then warp it onto the AOI grid (thin-plate spline through the window's GCPs, bilinear on linear
power). Digital number 0 is the slice's no-data border.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import GCPTransformer
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from pipeline.errors import InputFileError
from pipeline.geo import reproject_geometry
from pipeline.grid import Grid

log = logging.getLogger(__name__)
#: Smallest sigma0 kept after noise removal (-50 dB): a logarithm must stay defined.
NOISE_FLOOR = 1e-5
#: Extra radar-geometry pixels read around the AOI's outline: the bilinear warp's neighbours,
#: and slack for GCP interpolation between the grid points.
MARGIN_PX = 16


@dataclass(frozen=True)
class Lut:
    """A look-up table on a grid of azimuth lines and range pixels (rows: lines)."""

    lines: np.ndarray
    pixels: np.ndarray
    values: np.ndarray

    def window(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Bilinear values at the given image rows and columns, (len(rows), len(cols))."""
        along = np.stack([np.interp(cols, self.pixels, v) for v in self.values])
        if len(self.lines) == 1:
            return np.repeat(along, len(rows), axis=0)
        i = np.clip(np.searchsorted(self.lines, rows, side="right") - 1, 0, len(self.lines) - 2)
        l0, l1 = self.lines[i], self.lines[i + 1]
        f = np.clip((rows - l0) / np.maximum(l1 - l0, 1e-9), 0.0, 1.0)[:, None]
        return (1 - f) * along[i] + f * along[i + 1]


def _numbers(node: ET.Element | None, where: str) -> np.ndarray:
    text = "" if node is None else (node.text or "")
    if not text.strip():
        raise InputFileError(f"{where}: a calibration vector has no values")
    return np.array(text.split(), dtype=np.float64)


def _lut(vectors: list[ET.Element], value_tag: str, pixel_tag: str, where: str) -> Lut:
    if not vectors:
        raise InputFileError(f"{where}: no vectors with {value_tag}")
    lines = np.array([float(v.findtext("line", "nan")) for v in vectors])
    pix = [_numbers(v.find(pixel_tag), where) for v in vectors]
    vals = [_numbers(v.find(value_tag), where) for v in vectors]
    if any(len(p) != len(q) for p, q in zip(pix, vals, strict=True)) or np.isnan(lines).any():
        raise InputFileError(f"{where}: {value_tag} vectors do not match their pixel lists")
    common = np.unique(np.concatenate(pix))
    table = np.stack([np.interp(common, p, q) for p, q in zip(pix, vals, strict=True)])
    order = np.argsort(lines, kind="stable")
    return Lut(lines[order], common, table[order])


def _root(xml: bytes, tag: str, where: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputFileError(f"{where}: unreadable annotation XML ({exc})") from exc
    if root.tag != tag:
        raise InputFileError(f"{where}: root element <{root.tag}>, expected <{tag}>")
    return root


def sigma_lut(xml: bytes, where: str) -> Lut:
    """The ``sigmaNought`` table of a ``calibration-*.xml`` annotation."""
    root = _root(xml, "calibration", where)
    return _lut(root.findall(".//calibrationVector"), "sigmaNought", "pixel", where)


@dataclass(frozen=True)
class AzimuthBlock:
    """One sub-swath block of the azimuth noise vector: its extent and its table over lines."""

    first_line: int
    last_line: int
    first_pixel: int
    last_pixel: int
    lines: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Noise:
    """Thermal noise in DN^2: a range table, and azimuth blocks per sub-swath (IPF >= 2.9)."""

    range_lut: Lut
    azimuth: tuple[AzimuthBlock, ...]

    def window(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = self.range_lut.window(rows, cols)
        if not self.azimuth:
            return out
        factor = np.ones_like(out)
        for b in self.azimuth:
            r = (rows >= b.first_line) & (rows <= b.last_line)
            c = (cols >= b.first_pixel) & (cols <= b.last_pixel)
            if r.any() and c.any():
                factor[np.ix_(r, c)] = np.interp(rows[r], b.lines, b.values)[:, None]
        return out * factor


def noise_table(xml: bytes, where: str) -> Noise:
    """A ``noise-*.xml`` annotation, in either layout (before and after IPF 2.9)."""
    root = _root(xml, "noise", where)
    ranges = root.findall(".//noiseRangeVector")
    if ranges:
        lut = _lut(ranges, "noiseRangeLut", "pixel", where)
    else:
        lut = _lut(root.findall(".//noiseVector"), "noiseLut", "pixel", where)
    blocks = []
    for v in root.findall(".//noiseAzimuthVector"):
        edges = [
            int(v.findtext(k, "-1"))
            for k in ("firstAzimuthLine", "lastAzimuthLine", "firstRangeSample", "lastRangeSample")
        ]
        lines = _numbers(v.find("line"), where)
        values = _numbers(v.find("noiseAzimuthLut"), where)
        if len(lines) != len(values) or min(edges) < 0:
            raise InputFileError(f"{where}: a noiseAzimuthVector is incomplete")
        blocks.append(AzimuthBlock(edges[0], edges[1], edges[2], edges[3], lines, values))
    return Noise(lut, tuple(blocks))


def aoi_window(
    gcps: list[GroundControlPoint], gcp_crs: CRS, grid: Grid, shape: tuple[int, int]
) -> Window | None:
    """The slice's rows and columns that cover the AOI grid, or None when they miss it."""
    outline = shapely.segmentize(shapely.box(*grid.bounds), 250.0)
    ring = reproject_geometry(outline, grid.crs, gcp_crs).exterior.coords
    xs, ys = zip(*ring, strict=True)
    rows, cols = GCPTransformer(gcps, tps=True).rowcol(list(xs), list(ys), op=np.floor)
    r0, r1 = int(np.min(rows)) - MARGIN_PX, int(np.max(rows)) + MARGIN_PX + 1
    c0, c1 = int(np.min(cols)) - MARGIN_PX, int(np.max(cols)) + MARGIN_PX + 1
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, shape[0]), min(c1, shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _local_gcps(gcps: list[GroundControlPoint], win: Window) -> list[GroundControlPoint]:
    """The GCPs around the window, moved into its pixel frame (a local, exact warp)."""
    rows = np.unique([g.row for g in gcps])
    cols = np.unique([g.col for g in gcps])
    dr = float(np.max(np.diff(rows))) if len(rows) > 1 else np.inf
    dc = float(np.max(np.diff(cols))) if len(cols) > 1 else np.inf
    near = [
        g
        for g in gcps
        if win.row_off - dr <= g.row <= win.row_off + win.height + dr
        and win.col_off - dc <= g.col <= win.col_off + win.width + dc
    ]
    chosen = near if len(near) >= 6 else gcps
    return [
        GroundControlPoint(g.row - win.row_off, g.col - win.col_off, g.x, g.y, g.z) for g in chosen
    ]


def calibrate(
    dn: np.ndarray, rows: np.ndarray, cols: np.ndarray, sigma: Lut, noise: Noise | None
) -> np.ndarray:
    """sigma0 of a window of digital numbers (see the module docstring); NaN where DN is 0."""
    power = dn.astype(np.float64) ** 2
    if noise is not None:
        power = np.maximum(power - noise.window(rows, cols), 0.0)
    a = sigma.window(rows, cols)
    out = np.maximum(power / (a * a), NOISE_FLOOR)
    return np.where(dn > 0, out, np.nan).astype(np.float32)


def read_grd(
    measurement: str, calibration_xml: bytes, noise_xml: bytes | None, grid: Grid, where: str
) -> np.ndarray:
    """One polarisation of one slice as sigma0 on ``grid`` (NaN outside the slice)."""
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    sigma = sigma_lut(calibration_xml, where + " calibration")
    noise = None if noise_xml is None else noise_table(noise_xml, where + " noise")
    with rasterio.open(measurement) as src:
        gcps, gcp_crs = src.gcps
        if not gcps or gcp_crs is None:
            raise InputFileError(f"{where}: the measurement has no ground control points")
        if src.dtypes[0] not in ("uint16", "int16", "uint8"):
            raise InputFileError(
                f"{where}: measurement is {src.dtypes[0]}, not GRD digital numbers (uint16)"
            )
        win = aoi_window(gcps, gcp_crs, grid, (src.height, src.width))
        if win is None:
            return out
        dn = src.read(1, window=win)
    rows = np.arange(win.row_off, win.row_off + win.height, dtype=np.float64)
    cols = np.arange(win.col_off, win.col_off + win.width, dtype=np.float64)
    cal = calibrate(dn, rows, cols, sigma, noise)
    reproject(
        cal,
        out,
        gcps=_local_gcps(gcps, win),
        src_crs=gcp_crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
        SRC_METHOD="GCP_TPS",
    )
    return out
