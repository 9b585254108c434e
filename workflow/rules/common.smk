# Shared wiring: AOI discovery, paths, and how each step's inputs are found.

import json
import sys
from pathlib import Path

PYTHON = config.get("python") or sys.executable
DATA = config["paths"]["data"]
MODELS = config["paths"]["models"]
RESULTS = config["paths"]["results"]
LOGS = config["paths"]["logs"]
AOI_DIR = Path(config["aoi_dir"])

ALL_AOIS = sorted(p.stem for p in AOI_DIR.glob("*.geojson"))
AOIS = list(config["aois"]) or ALL_AOIS
_unknown = sorted(set(AOIS) - set(ALL_AOIS))
if _unknown:
    raise ValueError(f"config aois {_unknown} have no file in {AOI_DIR}/ (have: {ALL_AOIS})")
if not AOIS:
    raise ValueError(f"no AOI files in {AOI_DIR}/")

DATASET = f"{DATA}/processed/FinalBalanced_splits.npz"
CHECKPOINT = f"{MODELS}/best_{config['train']['backbone']}.pt"
SCENES = config["scenes"]
# One grid cap for every rule; synthetic towns are capped at 5 km unless configured.
MAX_SIZE_KM = SCENES.get("max_size_km") or (5.0 if SCENES["source"] == "synthetic" else None)
MAX_SIZE = f"--max-size-km {MAX_SIZE_KM}" if MAX_SIZE_KM else ""

wildcard_constraints:
    aoi="[a-z0-9][a-z0-9_-]*",
    epoch="before|after",


def aoi_file(wildcards):
    return str(AOI_DIR / f"{wildcards.aoi}.geojson")


def unosat_file(wildcards):
    """The AOI's UNOSAT file: the config pattern, or the AOI file's labels.path."""
    pattern = config["labels"].get("unosat")
    if pattern:
        return pattern.format(aoi=wildcards.aoi, data=DATA)
    doc = json.loads(Path(aoi_file(wildcards)).read_text())
    return doc["features"][0]["properties"]["labels"]["path"]


def scene_paths(aoi):
    return [f"{DATA}/scenes/{aoi}/{epoch}.tif" for epoch in ("before", "after")]


def missing_scenes():
    return [p for aoi in AOIS for p in scene_paths(aoi) if not Path(p).exists()]
