"""Areas of interest: one GeoJSON file per city and the validated :class:`AOI` it loads into.

:mod:`.model` loads (the record and its loaders), :mod:`.fields` parses properties,
:mod:`.validation` checks a file one rule at a time, :mod:`.writer` writes new files and
:mod:`.cli` is ``pipeline aoi check|new``. The loaders are re-exported here because every step
and the workflow start from them.
"""

from pipeline.aoi.fields import DateWindow, LabelSource
from pipeline.aoi.model import AOI, discover_aoi_files, load_aoi, validate_aoi_file

__all__ = [
    "AOI",
    "DateWindow",
    "LabelSource",
    "discover_aoi_files",
    "load_aoi",
    "validate_aoi_file",
]
