"""The file names of every map and aggregate output, in one place.

``damagenet predict`` writes ``<aoi>_damage_prob.tif`` and its siblings, ``damagenet pwtt``
``<aoi>_pwtt.tif`` and its siblings, ``damagenet fuse`` ``<aoi>_fused.tif`` and its siblings,
``damagenet aggregate --out OUT.gpkg`` writes ``OUT.gpkg`` and its siblings; the writers, the
readers of those files and the workflow (which declares each file as a rule output) all take
the names from here, so no name is spelled twice. Imports nothing heavy: the Snakefile imports it.
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


def map_suffixes(with_truth: bool) -> dict[str, str]:
    """What a map run writes, as suffixes after ``<aoi>`` for the workflow's ``multiext``.

    Keys are valid Python names (``cls``, not ``class``) so rules can say ``output.cls``; the
    summary and the quick-look (:data:`SUMMARY_SUFFIX`, :data:`QUICKLOOK_SUFFIX`) are declared
    apart, as report items.

    ``with_truth``: a training run also compares the map with its labels (agreement raster) and
    splits it by the checkpoint's training ground (split raster). Categorical rasters carry
    their colour table inside the GeoTIFF (no sidecar file).
    """
    rasters = {"prob": "prob.tif", "cls": MAP_RASTERS["class"]}
    if with_truth:
        rasters |= {k: MAP_RASTERS[k] for k in ("agreement", "split")}
    out: dict[str, str] = {}
    for key, name in rasters.items():
        out[key] = f"_damage_{name}"
        out[f"{key}_style"] = f"_damage_{name.removesuffix('.tif')}.qml"
    out |= {"patches": "_damage_patches.gpkg", "patches_style": "_damage_patches.qml"}
    return out


PWTT_SUFFIX = "_pwtt.tif"
FUSED_SUFFIX = "_fused.tif"
#: Files beside a radar T map ``<aoi>_pwtt.tif``, by key: the suffix after its stem.
PWTT_SIBLINGS: dict[str, str] = {
    "class": "_class.tif",
    "backscatter": "_backscatter.tif",
    "summary": "_summary.json",
    "quicklook": "_quicklook.png",
}
#: Files beside a fused map ``<aoi>_fused.tif``, by key (``sensors``: which sensors saw each
#: pixel).
FUSED_SIBLINGS: dict[str, str] = {
    "class": "_class.tif",
    "sensors": "_sensors.tif",
    "summary": "_summary.json",
    "quicklook": "_quicklook.png",
}


def _siblings(raster: Path, key: str, siblings: dict[str, str]) -> dict[str, Path]:
    return {key: raster, **{k: raster.with_name(raster.stem + s) for k, s in siblings.items()}}


def pwtt_outputs(t_map: str | Path) -> dict[str, Path]:
    """``<aoi>_pwtt.tif`` (key ``t``) and the files ``damagenet pwtt`` writes beside it."""
    return _siblings(Path(t_map), "t", PWTT_SIBLINGS)


def fused_outputs(fused: str | Path) -> dict[str, Path]:
    """``<aoi>_fused.tif`` (key ``fused``) and the files ``damagenet fuse`` writes beside it."""
    return _siblings(Path(fused), "fused", FUSED_SIBLINGS)


def radar_map_suffixes(product: str) -> dict[str, str]:
    """The rasters and styles of ``<aoi>_pwtt.tif`` (``product`` ``pwtt``) or ``<aoi>_fused.tif``
    (``fused``), as suffixes after ``<aoi>`` for the workflow's ``multiext``; the summary and
    quick-look are declared apart, as report items (:func:`radar_map_report_suffixes`)."""
    main, siblings = {"pwtt": ("t", PWTT_SIBLINGS), "fused": ("fused", FUSED_SIBLINGS)}[product]
    stem = f"_{product}"
    out = {main: f"{stem}.tif", f"{main}_style": f"{stem}.qml"}
    for key, suffix in siblings.items():
        if suffix.endswith(".tif"):
            name = "cls" if key == "class" else key
            out[name] = stem + suffix
            out[f"{name}_style"] = stem + suffix.removesuffix(".tif") + ".qml"
    return out


def radar_map_report_suffixes(product: str) -> dict[str, str]:
    """The summary and quick-look of a ``pwtt`` or ``fused`` map, as suffixes after ``<aoi>``."""
    siblings = {"pwtt": PWTT_SIBLINGS, "fused": FUSED_SIBLINGS}[product]
    return {k: f"_{product}{siblings[k]}" for k in ("summary", "quicklook")}


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
