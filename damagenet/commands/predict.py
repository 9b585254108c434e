"""``damagenet predict``: a damage map of a scene pair (:mod:`damagenet.maps.predict`)."""

from __future__ import annotations

import argparse

from contract.options import (
    distinct_outputs,
    existing_path,
    positive_float,
    positive_int,
    threshold_or_auto,
)
from damagenet.defaults import COMPILE_CHOICES, device_name


def _run(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.before, args.after, args.labels, args.ckpt])
    from damagenet.maps.predict import (  # heavy: only when the command runs
        PredictOptions,
        predict_map,
    )

    predict_map(
        args.before,
        args.after,
        args.ckpt,
        args.out,
        PredictOptions(
            stride=args.stride,
            batch_size=args.batch_size,
            tta=args.tta,
            threshold=args.threshold,
            device=args.device,
            memory_mb=args.memory_mb,
            progress=not args.quiet,
            compile=args.compile,
            dask_scheduler=args.dask_scheduler,
            allow_provisional=args.allow_provisional,
        ),
        labels=args.labels,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="write damage maps for a before/after scene pair",
        description="Score an aligned scene pair with the checkpoint's model (a patch model "
        "slid every --stride px, or a pixel model such as --arch siamese-unet over "
        "overlapping tiles as large as --memory-mb allows, in one pass) and write a float32 "
        "probability COG (<aoi>_damage_prob.tif; with several --ckpt the "
        "members' mean, and their spread in <aoi>_damage_uncertainty.tif), a "
        "uint8 class COG with colour "
        "table (<aoi>_damage_class.tif), QGIS styles (.qml), a styled GeoPackage "
        "of damaged patches (a pixel model's: 16 px cells), a JSON summary and a "
        "quick-look PNG; with --labels "
        "also an agreement raster and patch-level metrics; over an AOI the model "
        "was trained on, a split raster (<aoi>_damage_split.tif).",
    )
    _add_inputs(p)
    _add_map_options(p)
    _add_run_options(p)
    p.set_defaults(func=_run)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """The scenes, the checkpoints and the output; a named input that is missing exits 2."""
    p.add_argument(
        "--before",
        required=True,
        type=existing_path,
        help="before scene GeoTIFF (B02, B03, B04, B08)",
    )
    p.add_argument(
        "--after", required=True, type=existing_path, help="after scene GeoTIFF on the same grid"
    )
    p.add_argument(
        "--ckpt",
        required=True,
        action="append",
        type=existing_path,
        help="checkpoint from 'damagenet train' or 'damagenet crossval' (its "
        "calibration, if any, is applied); repeat for an ensemble: mean "
        "probability, the members' spread in <stem>_uncertainty.tif and "
        "the members' mean threshold",
    )
    p.add_argument(
        "--out",
        required=True,
        help="probability GeoTIFF path, e.g. results/maps/bucha_damage_prob.tif; "
        "the other outputs go beside it",
    )


def _add_map_options(p: argparse.ArgumentParser) -> None:
    """How the map is drawn: the checkpoint's state, windows, symmetries, threshold, labels."""
    p.add_argument(
        "--allow-provisional",
        action="store_true",
        help="accept the provisional checkpoint of an unfinished training run",
    )
    p.add_argument(
        "--stride",
        type=positive_int,
        default=8,
        help="step between windows in px; smaller = smoother, slower; patch models only "
        "(%(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="windows per model call; patch models only (%(default)s)",
    )
    p.add_argument(
        "--tta", action="store_true", help="average over the 8 symmetries of the square (8x slower)"
    )
    p.add_argument(
        "--threshold",
        default="auto",
        type=threshold_or_auto,
        help="probability for the class map: 'auto' = the checkpoint's "
        "validation-chosen threshold, or a number in (0, 1) (%(default)s)",
    )
    p.add_argument(
        "--labels",
        type=existing_path,
        help="label GeoTIFF (1/0/255) on the same grid for an "
        "agreement raster and patch-level metrics",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Where and how fast it runs: device, compilation, memory, a dask cluster."""
    p.add_argument(
        "--device", type=device_name, default="auto", help="auto, cpu or cuda (%(default)s)"
    )
    p.add_argument(
        "--compile",
        default="auto",
        choices=COMPILE_CHOICES,
        help="torch.compile the model: auto = on CUDA, and on a CPU for maps of at "
        "least 150,000 windows, where compiling pays; falls back to the "
        "uncompiled model when no compiler works; patch models only (%(default)s)",
    )
    p.add_argument(
        "--memory-mb",
        type=positive_float,
        default=256.0,
        help="memory budget in MiB: for a patch model the strips of scene read at once, for "
        "a pixel model the largest tile scored at once (its input and activations) "
        "(%(default)s)",
    )
    p.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="score strips of windows (a pixel model: rows of tiles) as tasks on this "
        "dask.distributed scheduler (e.g. tcp://10.0.0.5:8786); the scenes are read there "
        "in chunks",
    )
