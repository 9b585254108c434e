"""Scene acquisition: one cloud-masked, harmonised 4-band scene per AOI and epoch.

Sources (:mod:`.sources`) deliver digital numbers on the AOI grid and one finaliser
(:mod:`.product`) writes the product, so every source's output passes the same checks:

- ``stac``: Cloud Optimized GeoTIFFs from a public STAC API (Earth Search, Planetary Computer),
  no account needed (:mod:`.stac_source`);
- ``sentinelhub``: the Process and Catalog APIs of the Copernicus Data Space Ecosystem
  (:mod:`.sentinelhub_source`);
- ``local``: a GeoTIFF or an L2A SAFE product the user downloaded (:mod:`.local`);
- ``synthetic``: the synthetic generator, passed through the same harmonisation and masking.

:mod:`.defaults` holds the names and defaults the command line needs (the default source,
``stac``, is the library's too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.scenes.defaults import EPOCHS, SOURCES

if TYPE_CHECKING:
    from pipeline.scenes.acquire import acquire_scene

__all__ = ["EPOCHS", "SOURCES", "acquire_scene"]


def __getattr__(name: str) -> Any:
    """:func:`acquire_scene` loads its sources' clients when first asked for (PEP 562), so
    the command line's parser does not import them."""
    if name == "acquire_scene":
        from pipeline.scenes.acquire import acquire_scene

        return acquire_scene
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
