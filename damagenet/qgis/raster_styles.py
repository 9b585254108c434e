"""QGIS styles and colour tables for the damage maps.

A ``.qml`` beside each raster makes QGIS open it styled: a ramp with legend for probabilities,
named classes for the class and agreement rasters. The class raster also embeds its colour
table, so other GIS tools show the same colours.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

CLASS_COLOURS = {0: (230, 230, 230, 90), 1: (215, 25, 28, 255), 255: (0, 0, 0, 0)}
CLASS_LABELS = {0: "no damage", 1: "damage", 255: "no data"}
AGREEMENT_COLOURS = {
    0: (230, 230, 230, 60),
    1: (26, 150, 65, 255),
    2: (253, 174, 97, 255),
    3: (44, 123, 182, 255),
    255: (0, 0, 0, 0),
}
AGREEMENT_LABELS = {
    0: "true negative",
    1: "true positive",
    2: "false positive",
    3: "false negative",
    255: "no data or unknown label",
}
SPLIT_COLOURS = {
    0: (255, 255, 255, 0),
    1: (117, 112, 179, 160),
    2: (231, 41, 138, 160),
    3: (27, 158, 119, 160),
    255: (0, 0, 0, 0),
}
SPLIT_LABELS = {0: "never seen in training", 1: "train", 2: "validation", 3: "test", 255: "no data"}
#: outline and fill of damaged windows in the GeoPackage (fill translucent over imagery)
PATCH_FILL = (215, 25, 28, 90)
PATCH_OUTLINE = (189, 0, 38, 255)
#: probability ramp: (value, colour, label)
RAMP = [
    (0.0, (255, 255, 204, 0), "0 (intact)"),
    (0.25, (255, 237, 160, 120), "0.25"),
    (0.5, (254, 178, 76, 200), "0.5"),
    (0.75, (240, 59, 32, 230), "0.75"),
    (1.0, (189, 0, 38, 255), "1 (damaged)"),
]


def _hex(rgba: tuple[int, int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])


def _document(renderer: str, band_name: str) -> str:
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34.0" styleCategories="AllStyleCategories">
  <customproperties>
    <Option type="Map">
      <Option name="band_name" type="QString" value={quoteattr(band_name)}/>
    </Option>
  </customproperties>
  <pipe>
{renderer}
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def probability_qml(band_name: str, threshold: float) -> str:
    items = "\n".join(
        f'          <item alpha="{c[3]}" value="{v}" label={quoteattr(label)} color="{_hex(c)}"/>'
        for v, c, label in RAMP
    )
    renderer = f"""    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1"
                    alphaBand="-1" classificationMin="0" classificationMax="1" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="0" maximumValue="1" labelPrecision="2">
{items}
        </colorrampshader>
      </rastershader>
      <!-- decision threshold used for the class map: {threshold:.3f} -->
    </rasterrenderer>"""
    return _document(renderer, band_name)


def paletted_qml(band_name: str, colours: dict, labels: dict) -> str:
    entries = "\n".join(
        f'        <paletteEntry alpha="{c[3]}" value="{v}" label={quoteattr(labels[v])} '
        f'color="{_hex(c)}"/>'
        for v, c in colours.items()
        if v != 255
    )
    renderer = f"""    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1"
                    nodataColor="">
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>"""
    return _document(renderer, band_name)


def write_qml(raster: Path, text: str) -> Path:
    path = raster.with_suffix(".qml")
    path.write_text(text, encoding="utf-8")
    return path


def patches_qml(threshold: float) -> str:
    """Vector style of the damaged windows: translucent red squares with a dark red outline."""
    fill, line = (",".join(str(v) for v in c) for c in (PATCH_FILL, PATCH_OUTLINE))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">
    <symbols>
      <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{fill}"/>
            <Option name="outline_color" type="QString" value="{line}"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="0.3"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="joinstyle" type="QString" value="miter"/>
            <Option name="style" type="QString" value="solid"/>
          </Option>
        </layer>
      </symbol>
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>
  <!-- windows with a damage probability at or above {threshold:.3f} -->
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""
