"""QGIS styles of the building and zone layers: ``.qml`` files and the GeoPackage's own copy.

QGIS applies a ``.qml`` beside a file of the same name, and for a GeoPackage the default style
stored in its ``layer_styles`` table (QGIS's own convention), so the layers open styled either
way. Rule-based renderers keep "no data" (NULL) apart from "not damaged": a building outside the
map or under clouds is not an intact building. Symbol properties are written both as ``Option``
maps (QGIS >= 3.26) and ``prop`` elements (older QGIS, e.g. 3.22 LTR).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pandas as pd
import pyogrio

#: (filter expression, label, fill RGBA, outline RGBA, fill style, outline style)
BUILDING_RULES = [
    ('"damaged" = 1', "damaged", "215,25,28,255", "120,0,0,255", "solid", "solid"),
    ('"damaged" = 0', "not damaged", "200,200,200,200", "110,110,110,255", "solid", "solid"),
    (
        '"probability_mean" IS NULL',
        "no data (outside the map or nodata)",
        "0,0,0,0",
        "60,60,60,255",
        "no",
        "dash",
    ),
]
ZONE_RULES = [
    (
        '"damaged_share" < 0.05',
        "< 5 % damaged",
        "255,255,204,150",
        "120,120,120,255",
        "solid",
        "solid",
    ),
    (
        '"damaged_share" >= 0.05 AND "damaged_share" < 0.1',
        "5-10 %",
        "254,217,118,170",
        "120,120,120,255",
        "solid",
        "solid",
    ),
    (
        '"damaged_share" >= 0.1 AND "damaged_share" < 0.25',
        "10-25 %",
        "253,141,60,190",
        "120,120,120,255",
        "solid",
        "solid",
    ),
    (
        '"damaged_share" >= 0.25 AND "damaged_share" < 0.5',
        "25-50 %",
        "227,26,28,210",
        "120,120,120,255",
        "solid",
        "solid",
    ),
    ('"damaged_share" >= 0.5', ">= 50 %", "128,0,38,230", "120,120,120,255", "solid", "solid"),
    (
        '"damaged_share" IS NULL',
        "no assessed building",
        "150,150,150,120",
        "120,120,120,255",
        "b_diagonal",
        "dash",
    ),
]


def _symbol(index: int, fill: str, outline: str, style: str, outline_style: str) -> str:
    props = {
        "color": fill,
        "outline_color": outline,
        "outline_style": outline_style,
        "outline_width": "0.26",
        "outline_width_unit": "MM",
        "style": style,
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_unit": "MM",
    }
    options = "\n".join(
        f'            <Option name="{k}" type="QString" value="{v}"/>' for k, v in props.items()
    )
    legacy = "\n".join(f'          <prop k="{k}" v="{v}"/>' for k, v in props.items())
    return f"""      <symbol name="{index}" type="fill" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
{options}
          </Option>
{legacy}
        </layer>
      </symbol>"""


def rule_qml(rules: list[tuple[str, str, str, str, str, str]]) -> str:
    """A QGIS rule-based polygon style, one symbol per (filter, label, colours, styles) rule."""
    rule_xml = "\n".join(
        f'      <rule key="{{00000000-0000-0000-0000-{i:012d}}}" filter={quoteattr(f)} '
        f'label={quoteattr(label)} symbol="{i}"/>'
        for i, (f, label, *_rest) in enumerate(rules)
    )
    symbols = "\n".join(
        _symbol(i, fill, line, style, ls) for i, (_f, _l, fill, line, style, ls) in enumerate(rules)
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" forceraster="0"
               referencescale="-1">
    <rules key="{{00000000-0000-0000-0000-ffffffffffff}}">
{rule_xml}
    </rules>
    <symbols>
{symbols}
    </symbols>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""


def buildings_qml() -> str:
    return rule_qml(BUILDING_RULES)


def zones_qml() -> str:
    return rule_qml(ZONE_RULES)


def store_styles(gpkg: Path, styles: dict[str, str], geometry_column: str = "geom") -> None:
    """Store each layer's style as its default in the GeoPackage's ``layer_styles`` table.

    Written through GDAL as an attribute table, so it is registered in ``gpkg_contents`` like
    the table QGIS itself creates; the column names are QGIS's.
    """
    stamp = datetime(2000, 1, 1)  # fixed: the same inputs give the same file
    table = pd.DataFrame(
        {
            "f_table_catalog": "",
            "f_table_schema": "",
            "f_table_name": list(styles),
            "f_geometry_column": geometry_column,
            "styleName": list(styles),
            "styleQML": list(styles.values()),
            "styleSLD": "",
            "useAsDefault": True,
            "description": "damagenet aggregate",
            "owner": "",
            "ui": "",
            "update_time": stamp,
        }
    )
    pyogrio.write_dataframe(
        table, gpkg, layer="layer_styles", driver="GPKG", append=False, layer_options={"FID": "id"}
    )
