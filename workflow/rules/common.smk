# Shared wiring: the run's AOIs (loaded by pipeline.aoi, the same code `pipeline aoi check`
# runs, so the check and the workflow never disagree), paths, and the input functions of every
# rule. Defaults live in workflow/schemas/config.schema.yaml only; by now `validate` has filled
# every key it defines, so this file reads config[...] without fallbacks.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from damagenet.outputs import (PROB_SUFFIX, QUICKLOOK_SUFFIX, SUMMARY_SUFFIX, aggregate_suffixes,
                               map_suffixes)
from pipeline.aoi import discover_aoi_files, load_aoi
from pipeline.errors import PipelineError

MODE = config["mode"]
PYTHON = config["python"] or sys.executable
DATA = config["paths"]["data"]
MODELS = config["paths"]["models"]
RESULTS = config["paths"]["results"]
LOGS = config["paths"]["logs"]
SCENES = config["scenes"]
AGGREGATE = config["aggregate"]
AOI_DIR = Path(config["aoi_dir"])

AOI_FILES = {p.name.removesuffix(".geojson"): p for p in discover_aoi_files(AOI_DIR)}
AOIS = list(config["aois"]) or sorted(AOI_FILES)
if not AOIS:
    raise WorkflowError(f"no AOI files in {AOI_DIR}/")
_unknown = sorted(set(AOIS) - set(AOI_FILES))
if _unknown:
    raise WorkflowError(f"config aois {_unknown} have no file in {AOI_DIR}/ "
                        f"(have: {sorted(AOI_FILES)})")


def _load(slug):
    try:
        return load_aoi(AOI_FILES[slug])
    except PipelineError as exc:
        raise WorkflowError(f"{exc}\n(check it with: pipeline aoi check {AOI_FILES[slug]})")


AOI_OBJECTS = {slug: _load(slug) for slug in AOIS}

if MODE == "train":
    _unlabelled = [s for s, a in AOI_OBJECTS.items() if a.labels is None]
    if _unlabelled and not config["labels"]["unosat"]:
        raise WorkflowError(
            f"AOIs {_unlabelled} have no labels: a training run needs UNOSAT labels for every "
            "AOI. Map them with a trained model instead (--config mode=map "
            "checkpoint=models/<model>.pt 'aois=[...]') or leave them out of `aois`.")
    DATASET = f"{DATA}/processed/FinalBalanced_splits.npz"
    CHECKPOINT = f"{MODELS}/best_{config['train']['backbone']}.pt"
else:
    if not config["checkpoint"]:
        raise WorkflowError("mode=map needs a trained model: --config checkpoint=PATH.pt")
    if not Path(config["checkpoint"]).is_file():
        raise WorkflowError(f"checkpoint {config['checkpoint']} not found (mode=map uses an "
                            "existing model and never trains one)")
    CHECKPOINT = config["checkpoint"]

# Files each damage map writes beside <aoi>_damage_prob.tif (see `damagenet predict --help`).
# In a training run the map is also compared with the labels (agreement raster) and split by the
# checkpoint's record of its training ground (split raster); a mapping run's checkpoint may be an
# imported model without that record, so its split raster is not promised.
MAP_PREFIX = f"{RESULTS}/maps/{{aoi}}"
MAP_FILES = map_suffixes(with_truth=MODE == "train")
# Files `damagenet aggregate --out <aoi>.gpkg` writes.
AGGREGATE_FILES = aggregate_suffixes()


# The targets of the default rule; maps (and aggregates) always, the model and its metrics in a
# training run.
ALL_TARGETS = expand(f"{RESULTS}/maps/{{aoi}}{{f}}", aoi=AOIS, f=[PROB_SUFFIX, QUICKLOOK_SUFFIX])
if AGGREGATE["buildings"]:
    ALL_TARGETS += expand(f"{RESULTS}/aggregate/{{aoi}}.gpkg", aoi=AOIS)
if MODE == "train":
    ALL_TARGETS += [DATASET, CHECKPOINT, f"{RESULTS}/metrics.json"]


wildcard_constraints:
    aoi="|".join(AOIS) if AOIS else "[a-z0-9][a-z0-9_-]*",
    epoch="before|after",


def aoi_file(wildcards):
    return str(AOI_FILES[wildcards.aoi])


def unosat_file(wildcards):
    """The AOI's UNOSAT file: the config pattern, or the AOI's labels.path.

    AOI files name paths under the default data folder (``data/unosat/<slug>.zip``); with
    ``paths.data`` set elsewhere, such a path moves with it, so the download (rule unosat) and
    the labels step agree on one file.
    """
    pattern = config["labels"]["unosat"]
    if pattern:
        return pattern.format(aoi=wildcards.aoi, data=DATA)
    path = AOI_OBJECTS[wildcards.aoi].labels.path
    return f"{DATA}/{path[len('data/'):]}" if path.startswith("data/") else path


def scene_paths(aoi):
    return [f"{DATA}/scenes/{aoi}/{epoch}.tif" for epoch in ("before", "after")]


def missing_scenes():
    return [p for aoi in AOIS for p in scene_paths(aoi) if not Path(p).exists()]


def local_scene(wildcards):
    """scenes.local.<aoi>.<epoch> as a dict {path, date, bands}: a plain path string is a path."""
    try:
        entry = SCENES["local"][wildcards.aoi][wildcards.epoch]
    except KeyError:
        raise WorkflowError(f"scenes.source is local but scenes.local.{wildcards.aoi}."
                            f"{wildcards.epoch} is not set in the config")
    return {"path": entry} if isinstance(entry, str) else entry


def scene_input(wildcards):
    """The file a scene is read from: the synthetic town, a local download, or none (online)."""
    if SCENES["source"] == "synthetic":
        return f"{DATA}/synthetic/{wildcards.aoi}/{wildcards.epoch}.tif"
    if SCENES["source"] == "local":
        return local_scene(wildcards)["path"]
    return []


def scene_options(wildcards, input):
    """Source-specific options of `pipeline scene`, as a list Snakemake quotes item by item."""
    source = SCENES["source"]
    opts = ["--max-size-km", SCENES["max_size_km"]] if SCENES["max_size_km"] else []
    if source == "synthetic":  # the folder the synthetic rule wrote
        opts += ["--input", str(Path(input.scene).parent)]
    elif source == "local":
        entry = local_scene(wildcards)
        opts += ["--input", input.scene]
        if entry.get("date"):
            opts += ["--date", entry["date"]]
        if entry.get("bands"):
            bands = entry["bands"]
            opts += ["--bands", bands if isinstance(bands, str) else ",".join(bands)]
    elif source == "stac":
        opts += ["--stac-url", SCENES["stac"]["url"], "--collection", SCENES["stac"]["collection"]]
    elif source == "sentinelhub":
        opts += ["--sh-base-url", SCENES["base_url"]]
        if SCENES["mosaic"]:
            opts.append("--mosaic")
    return [str(o) for o in opts]


def grid_cap(wildcards):
    """The synthetic town's grid cap, the same the scene step uses."""
    return ["--max-size-km", str(SCENES["max_size_km"])] if SCENES["max_size_km"] else []


def map_labels(wildcards):
    """Labels compared with the map in a training run; none in mapping mode."""
    return f"{DATA}/labels/{wildcards.aoi}.tif" if MODE == "train" else []


def labels_option(wildcards, input):
    return ["--labels", input.labels] if input.labels else []


def tta_option(wildcards):
    return ["--tta"] if config["predict"]["tta"] else []


def test_aois_option(wildcards):
    test_aois = config["dataset"]["test_aois"]
    return ["--test-aois", *test_aois] if test_aois else []


def buildings_file(wildcards):
    return AGGREGATE["buildings"].format(aoi=wildcards.aoi, data=DATA)


def zones_option(wildcards, input):
    return ["--zones", input.zones] if input.zones else []


def zones_file(wildcards):
    zones = AGGREGATE["zones"]
    return zones.format(aoi=wildcards.aoi, data=DATA) if zones else []


RADAR = config["radar"]
if RADAR["enabled"]:
    ALL_TARGETS += expand(f"{DATA}/radar/{{aoi}}.zarr", aoi=AOIS)


def radar_input(wildcards):
    """What the radar store is made from: the synthetic town, a local folder, or none."""
    if RADAR["source"] == "synthetic":
        return multiext(f"{DATA}/synthetic/{wildcards.aoi}/", "truth.tif", "buildings.gpkg")
    if RADAR["source"] == "local":
        try:
            return RADAR["local"][wildcards.aoi]
        except KeyError:
            raise WorkflowError(f"radar.source local: no radar.local entry for {wildcards.aoi}")
    return []


def radar_options(wildcards, input):
    """Source-specific options of `pipeline radar`, as a list Snakemake quotes item by item."""
    source = RADAR["source"]
    opts = ["--source", source]
    if SCENES["max_size_km"]:  # the same grid as the AOI's scenes and labels
        opts += ["--max-size-km", SCENES["max_size_km"]]
    if source == "synthetic":
        opts += ["--input", str(Path(input.town[0]).parent)]
    elif source == "local":
        opts += ["--input", input.town]
    else:
        opts += ["--stac-url", RADAR["stac"]["url"], "--collection", RADAR["stac"]["collection"]]
    for window in ("pre", "post"):
        if RADAR[window]:
            opts += [f"--{window}", RADAR[window]]
    return opts
