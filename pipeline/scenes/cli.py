"""``pipeline scene``: one AOI, one epoch, one harmonised and cloud-masked scene.

Argparse wiring only: the sources' clients are imported when the command runs.
"""

from __future__ import annotations

import argparse

from contract.options import existing_path, iso_date
from pipeline.scenes.defaults import (
    CDSE_BASE_URL,
    CDSE_TOKEN_URL,
    DEFAULT_COLLECTION,
    DEFAULT_MASK_CLASSES,
    DEFAULT_MIN_VALID_FRACTION,
    DEFAULT_SOURCE,
    EARTH_SEARCH_URL,
    EPOCHS,
    SCALE_HELP,
    SCALES,
    SOURCES,
)


def class_list(text: str) -> list[int]:
    """``3,8,9`` -> [3, 8, 9]: SCL classes 0-11, refused by argparse (exit 2) otherwise."""
    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated SCL class numbers 0-11, got {text!r}"
        ) from None
    bad = [c for c in classes if not 0 <= c <= 11]
    if bad:
        raise argparse.ArgumentTypeError(f"SCL classes are 0-11, got {bad}")
    return classes


def _run(args: argparse.Namespace) -> int:
    from pipeline.aoi import load_aoi
    from pipeline.scenes.acquire import acquire_scene
    from pipeline.scenes.local import LocalOptions
    from pipeline.scenes.sentinelhub_source import SentinelHubOptions
    from pipeline.scenes.stac_source import StacOptions

    aoi = load_aoi(args.aoi_file)
    options = SentinelHubOptions(
        base_url=args.sh_base_url,
        token_url=args.sh_token_url,
        mosaic=args.mosaic,
        max_attempts=args.max_attempts,
    )
    acquire_scene(
        aoi,
        args.epoch,
        args.out,
        args.source,
        args.input,
        max_size_km=args.max_size_km,
        min_valid_fraction=args.min_valid_fraction,
        mask_classes=args.mask_classes,
        seed=args.seed,
        local=LocalOptions(
            date=args.date,
            bands=args.bands,
            scale=args.scale,
            scl_path=args.scl,
            boa_offset=args.boa_offset,
        ),
        sentinelhub=options,
        stac=StacOptions(
            url=args.stac_url, collection=args.collection, max_attempts=args.max_attempts
        ),
    )
    return 0


def _date_arg(text: str) -> str:
    """The shared ISO date type (exit 2 on a bad date), kept as text for LocalOptions."""
    return iso_date(text).isoformat()


def _bands_arg(text: str) -> tuple[str, ...]:
    from pipeline.errors import PipelineUsageError
    from pipeline.scenes.band_order import parse_bands

    try:
        return parse_bands(text)
    except PipelineUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _check_credentials(args: argparse.Namespace) -> int:
    from pipeline.errors import CredentialsError
    from pipeline.scenes.defaults import CREDENTIALS_HELP
    from pipeline.scenes.sentinelhub_source import has_credentials

    if not has_credentials():
        raise CredentialsError(
            "no Sentinel Hub credentials found (SH_CLIENT_ID and "
            f"SH_CLIENT_SECRET are not set). {CREDENTIALS_HELP}"
        )
    print("Sentinel Hub credentials found")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``pipeline credentials`` and ``pipeline scene``."""
    c = sub.add_parser(
        "credentials",
        help="check that Sentinel Hub credentials are set",
        description="Exit 0 if SHConfig finds Sentinel Hub credentials "
        "(environment or config file), else explain how to get "
        "them and exit 2. Nothing is sent over the network.",
    )
    c.set_defaults(func=_check_credentials)
    p = sub.add_parser(
        "scene",
        help="acquire a cloud-masked, harmonised 4-band scene for an AOI and epoch",
        description="Write a 4-band uint16 Cloud Optimized GeoTIFF (B02, B03, B04, B08) on the "
        "AOI's 10 m UTM grid, nodata 0 wherever there is no valid observation, "
        "harmonised to the pre-2022 digital-number scale, plus a JSON record of "
        "the acquisition beside it.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file")
    p.add_argument("--epoch", choices=EPOCHS, required=True, help="before or after scene")
    p.add_argument("--out", required=True, help="output GeoTIFF path")
    p.add_argument(
        "--source",
        choices=SOURCES,
        default=DEFAULT_SOURCE,
        help="where the data come from (default: %(default)s)",
    )
    _add_local(p)
    _add_masking(p)
    _add_services(p)
    p.set_defaults(func=_run)


def _add_local(p: argparse.ArgumentParser) -> None:
    """What the user says about a file they downloaded (``--source local``)."""
    p.add_argument(
        "--input",
        type=existing_path,
        help="local source: a multi-band GeoTIFF (any CRS/resolution), a "
        "folder or zip of one file per band (Copernicus Browser, "
        "Earth Search/STAC, GEE), or an L2A SAFE folder/zip; "
        "synthetic source: a folder written by 'pipeline synthetic' "
        "(default: generate one)",
    )
    p.add_argument(
        "--date",
        type=_date_arg,
        help="local source: acquisition date YYYY-MM-DD when the files' tags, STAC "
        "item or names do not give it (overrides them)",
    )
    p.add_argument(
        "--bands",
        type=_bands_arg,
        help="local GeoTIFF: the file's bands in order when they are not named, e.g. "
        "B04,B03,B02,B08 (the study's *_RGBNIR_clip.tif stacks); add SCL for a "
        "classification band (default: band descriptions, else B02,B03,B04,B08)",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        help=f"local source: value scale of the input, when it cannot be detected "
        f"from data type and metadata: {SCALE_HELP}",
    )
    p.add_argument(
        "--scl",
        type=existing_path,
        help="local GeoTIFF source: scene classification raster for masking "
        "(default: an SCL band or file, or <input>_scl.tif if present)",
    )
    p.add_argument(
        "--boa-offset",
        type=int,
        help="local source: BOA_ADD_OFFSET still in the digital numbers (e.g. -1000) "
        "when the tags do not record it (same as --scale dn-offset for -1000)",
    )


def _add_masking(p: argparse.ArgumentParser) -> None:
    """The grid, the mask and the minimum of valid ground."""
    p.add_argument(
        "--max-size-km",
        type=float,
        help="cap the AOI grid to a square of this side (default: whole AOI)",
    )
    p.add_argument(
        "--min-valid-fraction",
        type=float,
        default=DEFAULT_MIN_VALID_FRACTION,
        help="fail when less of the AOI than this has a valid observation (default: %(default)s)",
    )
    p.add_argument(
        "--mask-classes",
        type=class_list,
        default=",".join(map(str, DEFAULT_MASK_CLASSES)),
        help="SCL classes treated as no observation (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic source: random seed")


def _add_services(p: argparse.ArgumentParser) -> None:
    """Where the network sources ask, and how hard they try."""
    p.add_argument(
        "--mosaic",
        action="store_true",
        help="sentinelhub: least-cloud mosaic over a date window instead of the "
        "single least-cloudy acquisition",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        help="sentinelhub and stac: attempts for server errors, with backoff "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--sh-base-url",
        default=CDSE_BASE_URL,
        help="sentinelhub: service URL (default: %(default)s)",
    )
    p.add_argument(
        "--sh-token-url",
        default=CDSE_TOKEN_URL,
        help="sentinelhub: OAuth token URL (default: CDSE identity service)",
    )
    p.add_argument(
        "--stac-url",
        default=EARTH_SEARCH_URL,
        help="stac: STAC API to search, no account needed (default: Earth Search, "
        "%(default)s; Planetary Computer's "
        "https://planetarycomputer.microsoft.com/api/stac/v1 is signed "
        "automatically)",
    )
    p.add_argument(
        "--collection",
        default=DEFAULT_COLLECTION,
        help="stac: Sentinel-2 L2A collection of that API (default: %(default)s; "
        "also sentinel-2-l2a on Earth Search and Planetary Computer)",
    )
