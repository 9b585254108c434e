"""``pipeline aoi check`` and ``pipeline aoi new``: the analyst's AOI commands."""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

from shapely.geometry import box

from contract.atomic import write_text_atomic
from pipeline.aoi import (
    aoi_feature,
    discover_aoi_files,
    dump_aoi_json,
    parse_window,
    validate_aoi_file,
)
from pipeline.errors import PipelineError
from pipeline.reference import find_unosat_area


def check_aois(files: list[Path]) -> tuple[list[str], list[str], list[str]]:
    """Validate AOI files; return (summary lines, errors, warnings)."""
    lines, errors, warnings = [], [], []
    for path in files:
        aoi, errs, warns = validate_aoi_file(path)
        errors += errs
        warnings += warns
        if aoi is not None:
            lines.append(f"{aoi.slug:<14} {aoi.name:<22} {aoi.area_km2():8.2f} km2  "
                         f"EPSG:{aoi.utm_epsg}  before {aoi.before}  after {aoi.after}  "
                         f"{aoi.unosat_aoi}")
    return lines, errors, warnings


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def new_aoi(name: str, bbox: tuple[float, float, float, float], before: str, after: str,
            out_dir: Path = Path("aois"), labels: str | None = None,
            unosat_aoi: str | None = None, force: bool = False) -> Path:
    """Write ``out_dir/<slug>.geojson`` for a bounding box; validate it before returning."""
    west, south, east, north = bbox
    if not (west < east and south < north):
        raise PipelineError(f"--bbox must be W S E N with W < E and S < N, got {bbox}")
    slug = slugify(name)
    if not slug:
        raise PipelineError(f"cannot make a file name from {name!r}")
    path = out_dir / f"{slug}.geojson"
    if path.exists() and not force:
        raise PipelineError(f"{path} already exists (use --force to overwrite)")
    geom = box(west, south, east, north)
    code = unosat_aoi or find_unosat_area(geom) or "none"
    doc = aoi_feature(name=name, slug=slug, geometry=geom, before=parse_window(before),
                      after=parse_window(after), unosat_aoi=code,
                      labels={"path": labels or f"data/unosat/{slug}.zip"})
    write_text_atomic(path, dump_aoi_json(doc))
    _, errors, _ = validate_aoi_file(path)
    if errors:
        path.unlink()
        raise PipelineError("\n".join(errors))
    return path


def _run_check(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files] or discover_aoi_files(args.aoi_dir)
    if not files:
        raise PipelineError(f"no AOI files found in {args.aoi_dir}")
    lines, errors, warnings = check_aois(files)
    for line in lines:
        print(line)
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"{len(lines)} of {len(files)} AOI files valid")
    return 1 if errors else 0


def _run_new(args: argparse.Namespace) -> int:
    path = new_aoi(args.name, tuple(args.bbox), args.before, args.after, Path(args.aoi_dir),
                   args.labels, args.unosat_aoi, args.force)
    print(f"wrote {path}; edit its polygon in QGIS, then run: pipeline aoi check {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aoi", help="check or create AOI files",
                       description="Validate AOI files or write a new one.")
    aoi_sub = p.add_subparsers(dest="aoi_command", required=True, metavar="ACTION")
    c = aoi_sub.add_parser("check", help="validate AOI files and print one line each",
                           description="Validate AOI files. Prints name, area, UTM EPSG code "
                                       "and dates per AOI; exits 1 naming file and field for "
                                       "every problem.")
    c.add_argument("files", nargs="*", help="AOI files (default: every file in --aoi-dir)")
    c.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    c.set_defaults(func=_run_check)
    n = aoi_sub.add_parser("new", help="write a new AOI file from a bounding box",
                           description="Write <aoi-dir>/<slug>.geojson for a bounding box; "
                                       "refine the polygon in QGIS afterwards.")
    n.add_argument("name", help="city name, e.g. 'Borodianka'; the slug is derived from it")
    n.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"),
                   help="bounding box in degrees (EPSG:4326)")
    n.add_argument("--before", required=True,
                   help="before date YYYY-MM-DD, month YYYY-MM or window START/END")
    n.add_argument("--after", required=True,
                   help="after date YYYY-MM-DD, month YYYY-MM or window START/END")
    n.add_argument("--labels", help="UNOSAT file path (default: data/unosat/<slug>.zip)")
    n.add_argument("--unosat-aoi", help="UNOSAT area code (default: the one the box overlaps)")
    n.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.set_defaults(func=_run_new)
