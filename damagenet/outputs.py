"""The file names of every map and aggregate output, in one place.

``damagenet predict`` writes ``<aoi>_damage_prob.tif`` and its siblings, ``damagenet aggregate
--out OUT.gpkg`` writes ``OUT.gpkg`` and its siblings; the writers, the readers of those files
and the workflow (which declares each file as a rule output) all take the names from here, so
no name is spelled twice. Imports nothing heavy: the Snakefile imports it.
"""

from __future__ import annotations

from pathlib import Path

PROB_SUFFIX = "_damage_prob.tif"
SUMMARY_SUFFIX = "_damage_summary.json"
QUICKLOOK_SUFFIX = "_quicklook.png"
#: Raster products beside the probability map, by key (``<aoi>_damage_<name>``).
MAP_RASTERS: dict[str, str] = {
    "class": "class.tif",
    "agreement": "agreement.tif",
    "split": "split.tif",
    "uncertainty": "uncertainty.tif",
}


def _stems(prob: Path) -> tuple[str, str]:
    stem = prob.stem[: -len("_prob")] if prob.stem.endswith("_prob") else prob.stem
    base = stem[: -len("_damage")] if stem.endswith("_damage") else stem
    return stem, base


def map_outputs(prob: str | Path) -> dict[str, Path]:
    """``<aoi>_damage_prob.tif`` and the files ``damagenet predict`` writes beside it."""
    prob = Path(prob)
    stem, base = _stems(prob)
    return {
        "prob": prob,
        **{key: prob.with_name(f"{stem}_{name}") for key, name in MAP_RASTERS.items()},
        "patches": prob.with_name(f"{stem}_patches.gpkg"),
        "summary": prob.with_name(f"{stem}_summary.json"),
        "quicklook": prob.with_name(base + QUICKLOOK_SUFFIX),
    }


def map_suffixes(with_truth: bool, aux: bool = True) -> dict[str, str]:
    """What a map run writes, as suffixes after ``<aoi>`` for the workflow's ``multiext``.

    Keys are valid Python names (``cls``, not ``class``) so rules can say ``output.cls``; the
    summary and the quick-look (:data:`SUMMARY_SUFFIX`, :data:`QUICKLOOK_SUFFIX`) are declared
    apart, as report items.

    ``with_truth``: a training run also compares the map with its labels (agreement raster) and
    splits it by the checkpoint's training ground (split raster). ``aux``: whether categorical
    rasters carry their colour table in a ``.aux.xml`` sidecar.
    """
    rasters = {"prob": "prob.tif", "cls": MAP_RASTERS["class"]}
    if with_truth:
        rasters |= {k: MAP_RASTERS[k] for k in ("agreement", "split")}
    out: dict[str, str] = {}
    for key, name in rasters.items():
        out[key] = f"_damage_{name}"
        out[f"{key}_style"] = f"_damage_{name.removesuffix('.tif')}.qml"
        if aux and key != "prob":  # categorical: the colour table lives in a GDAL sidecar
            out[f"{key}_aux"] = f"_damage_{name}.aux.xml"
    out |= {"patches": "_damage_patches.gpkg", "patches_style": "_damage_patches.qml"}
    return out


#: Siblings of ``OUT.gpkg`` that ``damagenet aggregate`` writes, by key.
AGGREGATE_SIBLINGS: dict[str, str] = {
    "buildings.csv": "_buildings.csv",
    "zones.csv": "_zones.csv",
    "buildings.qml": "_buildings.qml",
    "zones.qml": "_zones.qml",
    "summary.json": "_summary.json",
}


def aggregate_outputs(out: str | Path) -> dict[str, Path]:
    """``OUT.gpkg`` and its siblings ``OUT_buildings.csv`` ... ``OUT_summary.json``."""
    out = Path(out)
    return {"gpkg": out, **{k: out.with_name(out.stem + s) for k, s in AGGREGATE_SIBLINGS.items()}}


def aggregate_suffixes() -> dict[str, str]:
    """What ``damagenet aggregate --out <aoi>.gpkg`` writes, as suffixes after ``<aoi>``."""
    return {"gpkg": ".gpkg", **{k.replace(".", "_"): s for k, s in AGGREGATE_SIBLINGS.items()}}
