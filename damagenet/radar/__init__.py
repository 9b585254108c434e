"""Damage from Sentinel-1 radar with no training: the Pixel-Wise T-Test (PWTT), without Earth
Engine, and its combinations with the Sentinel-2 model.

:mod:`~damagenet.radar.store` reads an AOI's radar store (:mod:`contract.radar`),
:mod:`~damagenet.radar.speckle` filters each image, :mod:`~damagenet.radar.ttest` holds the
per-orbit statistics and the test, :mod:`~damagenet.radar.smoothing` PWTT's spatial smoothing,
:mod:`~damagenet.radar.stream` runs them over the store in row strips with bounded memory, and
:mod:`~damagenet.radar.outputs` writes the T map, its class map, styles and quick-look;
:mod:`~damagenet.radar.null` holds the pre-war null test, :mod:`~damagenet.radar.fusion` the
radar + optical combinations and :mod:`~damagenet.radar.fused_map` the fused map.
"""

#: PWTT's default damage threshold on T.
DEFAULT_THRESHOLD = 3.3
#: The fused map's default threshold on its z-sum: about three no-change standard deviations.
FUSED_THRESHOLD = 3.0
