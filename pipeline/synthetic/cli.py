"""``pipeline synthetic``: write one synthetic town's scenes, SCL, UNOSAT files and footprints."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contract.options import existing_path
from pipeline.synthetic.options import DEFAULT_MAX_SIZE_KM, DEFAULT_MODE, MODES

log = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    from contract.atomic import staged_folder
    from pipeline.aoi import load_aoi
    from pipeline.synthetic.town import Nuisances, generate_synthetic

    aoi = load_aoi(args.aoi_file)
    with staged_folder(args.out) as tmp:  # the whole set appears at once, or nothing
        paths = generate_synthetic(
            aoi,
            tmp,
            seed=args.seed,
            max_size_km=args.max_size_km,
            nuisances=Nuisances(
                cloud=not args.no_cloud,
                swath_edge=not args.no_swath_edge,
                offset=not args.no_offset,
            ),
            mode=args.mode,
            prewar=args.prewar,
        )
    names = [Path(p).relative_to(tmp).as_posix() for p in vars(paths).values() if p is not None]
    log.info("%s: wrote %s", args.out, ", ".join(names))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthetic",
        help="write a synthetic scene pair and UNOSAT-style points for an AOI",
        description="Synthesise raw-looking Sentinel-2 L2A before/after scenes (B02, B03, B04, "
        "B08, uint16, 10 m UTM) of a town with damaged buildings, their SCL rasters, "
        "UNOSAT-style damage sites including 'No Visible Damage' ones (unosat.zip "
        "with truncated names, unosat.gpkg with full names), the building "
        "footprints with their truth (buildings.gpkg) and a truth raster. For tests "
        "and the offline demo, not a substitute for real imagery.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file (aois/<slug>.geojson)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--mode",
        choices=MODES,
        default=DEFAULT_MODE,
        help="realistic: painted at 2.5 m with mixed pixels, seasons, shadows, "
        "misregistration, haze and non-war change, statistics near real pairs; "
        "easy: a clean 10 m grid town with obvious damage, for fast unit tests "
        "(default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--max-size-km",
        type=float,
        default=DEFAULT_MAX_SIZE_KM,
        help="clip the AOI's bounds to a square of this side, centred in the AOI "
        "(default: %(default)s km)",
    )
    p.add_argument(
        "--prewar",
        action="store_true",
        help="also write prewar.tif (and prewar_scl.tif): the same town half a year before the "
        "before scene, clear and undamaged; with the before scene it is a temporal negative "
        "pair (pipeline tiles --all-negative)",
    )
    p.add_argument("--no-cloud", action="store_true", help="no cloud and shadow")
    p.add_argument("--no-swath-edge", action="store_true", help="no nodata wedge")
    p.add_argument(
        "--no-offset",
        action="store_true",
        help="no processing-baseline offset (+1000 DN) in the after scene",
    )
    p.set_defaults(func=_run)
