"""Sentinel-2 processing levels: top-of-atmosphere L1C or surface-reflectance L2A.

The two differ by the atmosphere (haze lifts L1C's blue band most), so a model trained on one
level and scoring the other sees shifted inputs. Scenes record their level in the raster tag
:data:`TAG`, patch and dataset files in :data:`contract.npz_keys.PROCESSING_LEVEL`, checkpoints
in their model card; :func:`warn_if_mismatch` is the one place that compares them.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

L1C = "L1C"
L2A = "L2A"
LEVELS: tuple[str, ...] = (L1C, L2A)
#: GeoTIFF tag of a scene product holding its level.
TAG = "PROCESSING_LEVEL"


def warn_if_mismatch(model_level: str | None, scene_level: str | None, what: str) -> bool:
    """Log a warning when a model trained on one level scores scenes of the other.

    Unknown levels (``None``) are not a mismatch: older files did not record them. Returns
    whether the levels differ, so callers can record it in their outputs.
    """
    if model_level is None or scene_level is None or model_level == scene_level:
        return False
    log.warning(
        "%s: the model was trained on %s scenes but scores %s scenes; the two differ by the "
        "atmosphere, so expect shifted probabilities (retrain or fine-tune on %s)",
        what,
        model_level,
        scene_level,
        scene_level,
    )
    return True
