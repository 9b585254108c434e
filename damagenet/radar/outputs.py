"""The files of a PWTT map, written strip by strip and published all at once.

``<aoi>_pwtt.tif`` is T (float32), ``<aoi>_pwtt_class.tif`` damage at the threshold (uint8,
0 / 1, 255 where untested), ``<aoi>_pwtt_backscatter.tif`` the pre-war mean VV backscatter in
dB (the radar's own view of the town, the quick-look's backdrop), each a COG with a QGIS style,
plus a JSON summary and a quick-look PNG. The rasters go through the map writers' row writers
(temporary GeoTIFFs copied into COGs); everything is staged in a hidden folder and moved into
place only when complete (:func:`contract.atomic.staged_folder`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from damagenet.maps.writers import CLASS, CLASS_NODATA, PROB_NODATA, Layer, MapGrid, RowWriter
from damagenet.outputs import pwtt_outputs
from damagenet.qgis.raster_styles import paletted_qml, write_qml
from damagenet.radar.stream import Rows

T_LAYER = Layer("t", "pwtt_T", "float32", PROB_NODATA)
RAW_T_LAYER = Layer("t", "pwtt_max_t_unsmoothed", "float32", PROB_NODATA)
BACKDROP_LAYER = Layer("backscatter", "vv_pre_war_mean_db", "float32", PROB_NODATA)
#: T ramp after PWTT's own display (min 3, max 5, yellow - red - purple), anchored at the
#: threshold: (offset from the threshold, colour with alpha)
T_RAMP = (
    (-3.3, (255, 255, 178, 0)),
    (-1.0, (255, 255, 0, 60)),
    (0.0, (255, 255, 0, 200)),
    (1.0, (255, 0, 0, 230)),
    (2.0, (128, 0, 128, 255)),
)


def t_qml(band_name: str, threshold: float) -> str:
    """A QGIS pseudocolour style for T: transparent when low, yellow at the threshold, red,
    purple above."""
    stops = [(max(0.0, threshold + d), c) for d, c in T_RAMP]
    items = "\n".join(
        f'          <item alpha="{c[3]}" value="{v:.3f}" label="{v:.1f}" '
        f'color="#{c[0]:02x}{c[1]:02x}{c[2]:02x}"/>'
        for v, c in stops
    )
    lo, hi = stops[0][0], stops[-1][0]
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34.0" styleCategories="AllStyleCategories">
  <customproperties>
    <Option type="Map">
      <Option name="band_name" type="QString" value={quoteattr(band_name)}/>
    </Option>
  </customproperties>
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1"
                    alphaBand="-1" classificationMin="{lo:.3f}" classificationMax="{hi:.3f}">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="{lo:.3f}" maximumValue="{hi:.3f}" labelPrecision="1">
{items}
        </colorrampshader>
      </rastershader>
      <!-- damaged where T > {threshold:.3f} -->
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def grey_qml(band_name: str) -> str:
    """A plain grey stretch for the backscatter backdrop (-25 to 5 dB)."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34.0" styleCategories="AllStyleCategories">
  <customproperties>
    <Option type="Map">
      <Option name="band_name" type="QString" value={quoteattr(band_name)}/>
    </Option>
  </customproperties>
  <pipe>
    <rasterrenderer type="singlebandgray" grayBand="1" gradient="BlackToWhite" opacity="1"
                    alphaBand="-1">
      <contrastEnhancement>
        <minValue>-25</minValue>
        <maxValue>5</maxValue>
        <algorithm>StretchToMinimumMaximum</algorithm>
      </contrastEnhancement>
    </rasterrenderer>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def class_rows(t: np.ndarray, threshold: float) -> np.ndarray:
    """1 where T > threshold, 0 where tested and not above, 255 where untested."""
    with np.errstate(invalid="ignore"):
        out = (t > threshold).astype(np.uint8)
    out[~np.isfinite(t)] = CLASS_NODATA
    return out


def as_float32(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), a, PROB_NODATA).astype(np.float32)


def write_map(
    out: Path,
    grid: MapGrid,
    rows: Iterable[Rows],
    tags: Mapping[str, Any],
    threshold: float,
    smoothed: bool,
) -> dict[str, Any]:
    """Write every raster of the map from ``rows``; return pixel counts for the summary.

    Called inside a staging folder (``out`` is the staged T path).
    """
    paths = pwtt_outputs(out)
    t_layer = T_LAYER if smoothed else RAW_T_LAYER
    str_tags = {k: str(v) for k, v in tags.items()}
    writers = {
        "t": RowWriter(out.with_suffix(".tmp.tif"), grid, t_layer, str_tags),
        "class": RowWriter(paths["class"].with_suffix(".tmp.tif"), grid, CLASS, str_tags),
        "backscatter": RowWriter(
            paths["backscatter"].with_suffix(".tmp.tif"), grid, BACKDROP_LAYER, str_tags
        ),
    }
    counts = {"tested_pixels": 0, "damaged_pixels": 0}
    try:
        for block in rows:
            cls = class_rows(block.t, threshold)
            writers["t"].write(block.start, as_float32(block.t))
            writers["class"].write(block.start, cls)
            writers["backscatter"].write(block.start, as_float32(block.backdrop))
            counts["tested_pixels"] += int((cls != CLASS_NODATA).sum())
            counts["damaged_pixels"] += int((cls == 1).sum())
        for key, resampling in (("t", "AVERAGE"), ("class", "NEAREST"), ("backscatter", "AVERAGE")):
            writers[key].to_cog(paths[key], resampling)
    finally:
        for writer in writers.values():
            writer.close()
    write_qml(paths["t"], t_qml(t_layer.description, threshold))
    write_qml(
        paths["class"],
        paletted_qml(CLASS.description, dict(CLASS.colours or {}), dict(CLASS.labels or {})),
    )
    write_qml(paths["backscatter"], grey_qml(BACKDROP_LAYER.description))
    return counts


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
