"""``pipeline radar``: one AOI's Sentinel-1 time series as a Zarr store, no account needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from contract import radar
from contract.options import existing_path, int_at_least, positive_float, positive_int
from pipeline.radar import COLLECTIONS, PLANETARY_COMPUTER_URL, SCALES, SOURCES


def _window(text: str):  # noqa: ANN202 (DateWindow, imported lazily)
    from pipeline.errors import PipelineUsageError
    from pipeline.radar.series import window_arg

    try:
        return window_arg(text)
    except PipelineUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    from pipeline.aoi import load_aoi
    from pipeline.radar.build import LocalRadarOptions, RadarRequest, build_radar
    from pipeline.radar.stac import RadarStacOptions

    aoi = load_aoi(args.aoi_file)
    request = RadarRequest(
        out=Path(args.out),
        source=args.source,
        input=Path(args.input) if args.input else None,
        pre=args.pre,
        post=args.post,
        max_size_km=args.max_size_km,
        seed=args.seed,
        workers=args.workers,
        stac=RadarStacOptions(
            url=args.stac_url,
            collection=args.collection,
            noise=not args.no_noise_removal,
            max_attempts=args.max_attempts,
        ),
        local=LocalRadarOptions(
            scale=args.rtc_scale,
            calibration=args.calibration,
            orbit=args.orbit,
            orbit_state=args.orbit_state,
            noise=not args.no_noise_removal,
        ),
    )
    print(build_radar(aoi, request))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "radar",
        help="build an AOI's Sentinel-1 VV/VH time series (Zarr) on its 10 m grid",
        description="Write the calibrated VV and VH backscatter (linear power, NaN = no data) "
        "of every Sentinel-1 IW acquisition over the AOI in the pre and post windows, on the "
        "AOI's own 10 m grid, per relative orbit (slices of one pass mosaicked), as one "
        "chunked Zarr store with CF grid mapping, plus <aoi>.items.json listing every item "
        "or file used. No account: Planetary Computer sentinel-1-rtc when its token endpoint "
        "answers without a key, else sentinel-1-grd calibrated with its annotations.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file")
    p.add_argument("--out", required=True, help="output store, data/radar/<aoi>.zarr")
    p.add_argument(
        "--source",
        choices=SOURCES,
        default="stac",
        help="where the radar comes from (default: %(default)s)",
    )
    p.add_argument(
        "--stac-url",
        default=PLANETARY_COMPUTER_URL,
        help="stac: STAC API in Planetary Computer's layout (default: %(default)s)",
    )
    p.add_argument(
        "--collection",
        choices=COLLECTIONS,
        default="auto",
        help="stac: auto = sentinel-1-rtc when its token endpoint answers without "
        "a key, else sentinel-1-grd (default: %(default)s)",
    )
    p.add_argument(
        "--input",
        type=existing_path,
        help="local: a folder (or one file) of SAFE GRD products "
        "(*.SAFE or *.zip) or of RTC GeoTIFFs (one per polarisation and date); "
        "synthetic: a 'pipeline synthetic' folder (default: make one)",
    )
    p.add_argument(
        "--pre",
        type=_window,
        metavar="START/END",
        help=f"pre window (default: the 12 months before the war, {radar.WAR_START} excluded)",
    )
    p.add_argument(
        "--post",
        type=_window,
        metavar="START/END",
        help="post window (default: the AOI's after window, at least 30 days)",
    )
    p.add_argument(
        "--max-size-km",
        type=positive_float,
        help="cap the AOI grid to a square of this side (synthetic default: 5)",
    )
    _local_and_network_options(p)
    p.set_defaults(func=_run)


def _local_and_network_options(p: argparse.ArgumentParser) -> None:
    """What local files may not say about themselves, and the network's behaviour."""
    p.add_argument(
        "--rtc-scale",
        choices=SCALES,
        help="local RTC GeoTIFFs: value scale when tags and names do not say it",
    )
    p.add_argument(
        "--calibration",
        choices=radar.CALIBRATIONS,
        help="local RTC GeoTIFFs: gamma0 or sigma0 when tags and names do not say",
    )
    p.add_argument(
        "--orbit",
        type=int_at_least(1),
        help="local RTC GeoTIFFs: their relative orbit, when not in their tags",
    )
    p.add_argument(
        "--orbit-state",
        choices=radar.ORBIT_STATES,
        help="local RTC GeoTIFFs: their orbit direction, when not in their tags",
    )
    p.add_argument(
        "--no-noise-removal",
        action="store_true",
        help="GRD and SAFE: calibrate without removing thermal noise",
    )
    p.add_argument(
        "--max-attempts",
        type=positive_int,
        default=5,
        help="stac: attempts per request on 429 and 5xx, with backoff (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=4,
        help="acquisitions read at once (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
