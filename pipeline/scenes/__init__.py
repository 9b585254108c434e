"""Scene acquisition: one cloud-masked, harmonised 4-band scene per AOI and epoch.

Sources (:mod:`.sources`) deliver digital numbers on the AOI grid and one finaliser
(:mod:`.product`) writes the product, so every source's output passes the same checks:

- ``stac``: Cloud Optimized GeoTIFFs from a public STAC API (Earth Search, Planetary Computer),
  no account needed (:mod:`.stac_source`);
- ``sentinelhub``: the Process and Catalog APIs of the Copernicus Data Space Ecosystem
  (:mod:`.sentinelhub_source`);
- ``local``: a GeoTIFF or an L2A SAFE product the user downloaded (:mod:`.local`);
- ``synthetic``: the synthetic generator, passed through the same harmonisation and masking.
"""

from pipeline.scenes.acquire import EPOCHS, acquire_scene
from pipeline.scenes.sources import SOURCES

__all__ = ["EPOCHS", "SOURCES", "acquire_scene"]
