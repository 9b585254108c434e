"""Rebuild ``aois/`` from the study's seed table and the UNOSAT assessment areas.

Kept so the catalogue can be regenerated and audited: each AOI is its city's part of the UNOSAT
area. Where several cities share one UNOSAT area (Bucha, Irpin, Hostomel and Vorzel in UKR2;
Rubizhne and Lysychansk in UKR3; Kherson and Antonivka in UKR16) the area is divided between them
by Voronoi cells of the city centres, computed in metres (UTM), so the AOIs never overlap.

Usage: python scripts/build_aoi_catalogue.py ../shared/reference/seed_aois.csv --out aois
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from shapely.geometry import MultiPoint, Point
from shapely.ops import voronoi_diagram

from pipeline.aoi.fields import parse_window
from pipeline.aoi.writer import aoi_feature, dump_aoi_json
from pipeline.geo import reproject_geometry, utm_epsg_for
from pipeline.reference import unosat_area


def build(seed_csv: Path, out: Path) -> list[Path]:
    rows = list(csv.DictReader(seed_csv.open(encoding="utf-8")))
    by_area: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_area[row["unosat_aoi"]].append(row)
    written = []
    for code, members in sorted(by_area.items()):
        area = unosat_area(code)
        epsg = utm_epsg_for(area)
        area_utm = reproject_geometry(area, "EPSG:4326", epsg)
        centres = {
            r["slug"]: reproject_geometry(
                Point(float(r["center_lon"]), float(r["center_lat"])), "EPSG:4326", epsg
            )
            for r in members
        }
        if len(members) == 1:
            cells = {members[0]["slug"]: area_utm}
        else:
            envelope = area_utm.envelope.buffer(10_000)
            regions = voronoi_diagram(MultiPoint(list(centres.values())), envelope=envelope)
            cells = {}
            for slug, centre in centres.items():
                cell = next(g for g in regions.geoms if g.contains(centre))
                cells[slug] = area_utm.intersection(cell)
        for row in members:
            geom = reproject_geometry(cells[row["slug"]], epsg, "EPSG:4326")
            doc = aoi_feature(
                name=row["name"],
                slug=row["slug"],
                geometry=geom,
                before=parse_window(row["before_scene"]),
                after=parse_window(row["after_scene"]),
                unosat_aoi=code,
                labels={
                    "path": f"data/unosat/{row['slug']}.zip",
                    "product": f"UNOSAT Comprehensive Damage Assessment ({code})",
                },
            )
            path = out / f"{row['slug']}.geojson"
            path.write_text(dump_aoi_json(doc), encoding="utf-8")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("seed_csv", type=Path, help="the study's seed table (seed_aois.csv)")
    parser.add_argument("--out", type=Path, default=Path("aois"), help="catalogue folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in build(args.seed_csv, args.out):
        print(path)


if __name__ == "__main__":
    main()
