"""What ``pipeline scene`` offers and assumes, in one light module.

The sources' modules import heavy clients (sentinelhub, odc-stac, GDAL); the command line only
needs these names and defaults to build its parser, so ``pipeline --help`` stays quick, and the
library (:func:`pipeline.scenes.acquire_scene`) and the command line share one default source.
"""

from __future__ import annotations

EPOCHS = ("before", "after")
#: Every scene source, in the order ``--source`` lists them (:data:`.sources.READERS`).
SOURCES: tuple[str, ...] = ("stac", "sentinelhub", "local", "synthetic")
#: The source of the library, the command line and the workflow's configuration alike:
#: public STAC, no account needed.
DEFAULT_SOURCE = "stac"
#: SCL classes without a usable observation: nodata, saturated/defective, cloud shadow,
#: cloud medium and high probability, thin cirrus, snow.
DEFAULT_MASK_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
CLOUD_CLASSES = (3, 8, 9, 10)
DEFAULT_MIN_VALID_FRACTION = 0.3

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTION = "sentinel-2-c1-l2a"
CDSE_BASE_URL = "https://sh.dataspace.copernicus.eu"
CDSE_TOKEN_URL = (
    "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
)
CREDENTIALS_HELP = (
    "Create a free Copernicus Data Space Ecosystem account and an OAuth client "
    "(https://shapps.dataspace.copernicus.eu/dashboard/ > User settings > OAuth clients), then "
    "export SH_CLIENT_ID=<client id> and SH_CLIENT_SECRET=<client secret> (or store them with "
    "'sentinelhub.config --sh_client_id ... --sh_client_secret ...'). See docs/data-sources.md. "
    "To try the workflow offline instead: snakemake --cores 2 --configfile config/demo.yaml"
)

#: Scales a local file's values may be on (``--scale``), :mod:`.harmonise` converts them.
SCALES: tuple[str, ...] = ("dn", "dn-offset", "reflectance", "browser-uint16", "browser-uint8")
SCALE_HELP = (
    "dn (digital numbers, offset removed), dn-offset (digital numbers with the +1000 "
    "BOA offset of baseline >= 04.00 products), reflectance (float 0..1), "
    "browser-uint16 or browser-uint8 (Copernicus Browser integer exports)"
)
