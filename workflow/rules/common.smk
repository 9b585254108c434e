# Shared wiring: the run's AOIs (loaded by pipeline.aoi, the same code `pipeline aoi check`
# runs, so the check and the workflow never disagree), paths, and the input functions of every
# rule. Defaults live in workflow/schemas/config.schema.yaml only; by now `validate` has filled
# every key it defines, so this file reads config[...] without fallbacks.

import math
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from damagenet.outputs import (FUSED_SUFFIX, PROB_SUFFIX, PWTT_SUFFIX, QUICKLOOK_SUFFIX,
                               SUMMARY_SUFFIX, aggregate_suffixes, map_suffixes,
                               radar_map_report_suffixes, radar_map_suffixes)
from pipeline.aoi import discover_aoi_files, load_aoi
from pipeline.errors import PipelineError
from pipeline.grid import RESOLUTION_M

MODE = config["mode"]
# Which sensors map damage: s2 (the Sentinel-2 model), s1 (PWTT on Sentinel-1, no model at all)
# or both (each map, and the fused one).
SENSOR = config["sensor"]
OPTICAL = SENSOR in ("s2", "both")
RADAR_MAPS = SENSOR in ("s1", "both")
ARCH = config["model"]["arch"]
TILES = ARCH == "siamese-unet"  # the pixel model trains on a tile dataset
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

if SENSOR == "s1" and MODE == "train":
    raise WorkflowError(
        "sensor s1 maps damage with PWTT, which needs no training: run it with --config "
        "mode=map sensor=s1 (or sensor=both to train the Sentinel-2 model beside it)")

CHECKPOINT = None
if MODE == "train":
    _unlabelled = [s for s, a in AOI_OBJECTS.items() if a.labels is None]
    if _unlabelled and not config["labels"]["unosat"]:
        raise WorkflowError(
            f"AOIs {_unlabelled} have no labels: a training run needs UNOSAT labels for every "
            "AOI. Map them with a trained model instead (--config mode=map "
            "checkpoint=models/<model>.pt 'aois=[...]') or leave them out of `aois`.")
    if TILES:
        DATASET = f"{DATA}/processed/tiles{config['model']['tile_size']}_splits.npz"
        CHECKPOINT = f"{MODELS}/best_{ARCH}.pt"
    else:
        DATASET = f"{DATA}/processed/FinalBalanced_splits.npz"
        CHECKPOINT = f"{MODELS}/best_{config['train']['backbone']}.pt"
elif OPTICAL:
    if not config["checkpoint"]:
        raise WorkflowError(f"mode=map with sensor {SENSOR} needs a trained model: --config "
                            "checkpoint=PATH.pt (or sensor=s1: radar maps need none)")
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


# Plots `damagenet evaluate` writes beside metrics.json: for the patch model its confusion
# matrices (counts, normalised, at the threshold), ROC and PR curves; for the pixel model the
# confusion matrix at its threshold, ROC and PR curves over labelled pixels, and the models'
# ROC curves at pixel, patch and point level.
EVALUATION_PLOTS = ["confusion_matrix_threshold.png", "roc_curve.png", "pr_curve.png"]
if TILES:
    EVALUATION_PLOTS += [f"roc_models_{level}.png" for level in ("pixel", "patch", "point")]
else:
    EVALUATION_PLOTS += ["confusion_matrix_counts.png", "confusion_matrix_normalized.png"]

# Files `damagenet pwtt` and `damagenet fuse` write beside <aoi>_pwtt.tif and <aoi>_fused.tif.
PWTT_FILES = radar_map_suffixes("pwtt")
FUSED_FILES = radar_map_suffixes("fused")
PWTT_REPORT = radar_map_report_suffixes("pwtt")
FUSED_REPORT = radar_map_report_suffixes("fused")

# The maps of this run, as suffixes after results/maps/<aoi>, by product: the keys are the
# suffixes of results/aggregate/<aoi><product>.gpkg.
MAP_PRODUCTS = {}
if OPTICAL:
    MAP_PRODUCTS[""] = PROB_SUFFIX
if RADAR_MAPS:
    MAP_PRODUCTS["_pwtt"] = PWTT_SUFFIX
if SENSOR == "both":
    MAP_PRODUCTS["_fused"] = FUSED_SUFFIX
QUICKLOOKS = {"": QUICKLOOK_SUFFIX, "_pwtt": PWTT_REPORT["quicklook"],
              "_fused": FUSED_REPORT["quicklook"]}

# The targets of the default rule; maps (and aggregates) always, the model and its metrics in a
# training run.
ALL_TARGETS = expand(f"{RESULTS}/maps/{{aoi}}{{f}}", aoi=AOIS,
                     f=[f for p in MAP_PRODUCTS for f in (MAP_PRODUCTS[p], QUICKLOOKS[p])])
if AGGREGATE["buildings"]:
    ALL_TARGETS += expand(f"{RESULTS}/aggregate/{{aoi}}{{product}}.gpkg", aoi=AOIS,
                          product=list(MAP_PRODUCTS))
if MODE == "train":
    ALL_TARGETS += [DATASET, CHECKPOINT, f"{RESULTS}/metrics.json"]


wildcard_constraints:
    aoi="|".join(AOIS) if AOIS else "[a-z0-9][a-z0-9_-]*",
    epoch="before|after",
    product="|_pwtt|_fused",


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


def aggregate_map(wildcards):
    """The map an aggregate sums: the Sentinel-2 probability, PWTT's T or the fused z."""
    return f"{RESULTS}/maps/{wildcards.aoi}{MAP_PRODUCTS[wildcards.product]}"


def named_or_pattern(value, names, wildcards):
    """A config value that is one of ``names`` (a source the command fetches) or a file
    pattern with {aoi} and {data}: the file, or nothing for a named source."""
    return [] if value in names else value.format(aoi=wildcards.aoi, data=DATA)


def buildings_file(wildcards):
    return named_or_pattern(AGGREGATE["buildings"], ("osm", "overture"), wildcards)


#: zones the aggregate command makes itself (aligned 500 m cells, PWTT's Web Mercator grid) or
#: fetches (geoBoundaries districts); anything else is a file pattern
ZONE_LAYOUTS = ("grid", "pwtt-grid", "geoboundaries")


def zones_file(wildcards):
    zones = AGGREGATE["zones"]
    return named_or_pattern(zones, ZONE_LAYOUTS, wildcards) if zones else []


def aggregate_options(wildcards, input):
    """Options of `damagenet aggregate` from the aggregate section, as a list Snakemake quotes
    item by item: footprints and zones as files or named sources, their services, the cache.

    The Sentinel-2 map is classed at aggregate.threshold; PWTT's and the fused map at their
    own threshold (the THRESHOLD tag `damagenet pwtt` and `damagenet fuse` write).
    """
    buildings, zones = AGGREGATE["buildings"], AGGREGATE["zones"]
    opts = ["--buildings", input.buildings or buildings]
    if buildings in ("osm", "overture") and AGGREGATE[f"{buildings}_url"]:
        opts += [f"--{buildings}-url", AGGREGATE[f"{buildings}_url"]]
    if zones:
        opts += ["--zones", input.zones or zones]
    if zones == "geoboundaries":
        for key in ("districts_iso", "districts_level", "geoboundaries_url"):
            if AGGREGATE[key]:
                opts += [f"--{key.replace('_', '-')}", AGGREGATE[key]]
    if buildings in ("osm", "overture") or zones == "geoboundaries":  # fetched, cached per AOI
        opts += ["--data-dir", DATA, "--aoi", wildcards.aoi]
    threshold = AGGREGATE["threshold"] if wildcards.product == "" else "auto"
    return [str(o) for o in [*opts, "--grid-m", AGGREGATE["grid_m"], "--threshold", threshold]]


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


def arch_options(backbone):
    """The architecture's own recipe for `damagenet train` and `crossval`, as a list Snakemake
    quotes item by item: the pixel model's encoder, fusion, width, batch and learning rate
    (model section), or the patch model's backbone and batch (train section)."""
    if TILES:
        m = config["model"]
        return [
            *("--encoder", m["encoder"], "--fusion", m["fusion"], "--width", m["width"]),
            *("--batch-size", m["batch_size"], "--lr-backbone", m["lr"], "--lr-head", m["lr"]),
        ]
    return ["--backbone", backbone, "--batch-size", config["train"]["batch_size"]]


def train_arch_options(wildcards):
    return arch_options(config["train"]["backbone"])


def crossval_arch_options(wildcards):
    return arch_options(config["crossval"]["backbone"])


PWTT = config["pwtt"]


def pwtt_options(wildcards):
    """Options of `damagenet pwtt` from the pwtt section; with both sensors also the pre-war
    null test, which the fused map standardises T with."""
    opts = ["--threshold", str(PWTT["threshold"])]
    if PWTT["test"] == "welch":
        opts.append("--welch")
    if PWTT["orbits"] == "stouffer":
        opts.append("--stouffer")
    if SENSOR == "both":
        opts.append("--null")
    return opts


def dataset_block_m():
    """dataset.block_m, for a tile dataset rounded up to whole tiles: a tile never straddles a
    block edge, so no tile's ground is in two splits (`pipeline dataset` drops those that do)."""
    block_m = config["dataset"]["block_m"]
    if not TILES:
        return block_m
    tile_m = config["model"]["tile_size"] * RESOLUTION_M
    return max(1, math.ceil(block_m / tile_m - 1e-9)) * tile_m


def dataset_options(wildcards, input):
    """What `pipeline dataset` makes: a tile dataset of model.tile_size (siamese-unet), or the
    balanced patch dataset with its hard negatives (siamese-resnet)."""
    if TILES:
        return ["--tile-size", str(config["model"]["tile_size"])]
    d = config["dataset"]
    return [
        "--negatives-per-positive", str(d["negatives_per_positive"]),
        "--hard-negative-share", str(d["hard_negative_share"]),
        "--nvd", *input.nvd,
    ]
