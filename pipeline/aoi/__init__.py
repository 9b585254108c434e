"""Areas of interest: one GeoJSON file per city and the validated :class:`AOI` it loads into.

:mod:`.model` loads (the record and its loaders), :mod:`.fields` parses properties,
:mod:`.validation` checks a file one rule at a time, :mod:`.writer` and :mod:`.create` write new
files and :mod:`.cli` is ``pipeline aoi check|new``. The loaders are re-exported here because
every step and the workflow start from them; they load on first use, so a command line that
only parses its options (``--help``) does not import shapely and pyproj.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.aoi.fields import DateWindow, LabelSource
    from pipeline.aoi.model import AOI, discover_aoi_files, load_aoi, validate_aoi_file

_HOMES = {
    "AOI": "pipeline.aoi.model",
    "DateWindow": "pipeline.aoi.fields",
    "LabelSource": "pipeline.aoi.fields",
    "discover_aoi_files": "pipeline.aoi.model",
    "load_aoi": "pipeline.aoi.model",
    "validate_aoi_file": "pipeline.aoi.model",
}
__all__ = [
    "AOI",
    "DateWindow",
    "LabelSource",
    "discover_aoi_files",
    "load_aoi",
    "validate_aoi_file",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module when first asked for (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
