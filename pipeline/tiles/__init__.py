"""Per-pixel targets and the tiles the pixel model trains on.

:mod:`.targets` turns what the labels really are (UNOSAT points, or a change map) into a target
raster of 1 damage, 0 negative, 255 ignore; :mod:`.cut` cuts aligned before/after/target tiles
of one AOI into a tile file; :mod:`.cli` holds the ``pipeline targets`` and ``pipeline tiles``
commands. ``pipeline dataset --tile-size`` (:mod:`pipeline.dataset`) splits the tile files.
"""

#: Radius (px) of the positive disc around a destroyed or severely damaged site: UNOSAT places
#: a point to about 10-30 m, so the pixel holding it and its neighbours within 10 m.
DEFAULT_DISC_PX = 1.0
#: Radius (px) of the ignore ring around every site of any class: the point may be this far
#: from the damage it marks, so ground this near a site is neither positive nor negative.
DEFAULT_RING_PX = 3.0
#: UNOSAT classes whose sites are positive: destroyed and severe damage. Moderate and possible
#: damage are rarely visible at 10 m, so they are ignored (their ring), not positives.
DEFAULT_TARGET_CLASSES = (1, 2)
DEFAULT_TILE_SIZE = 64
#: Key of a tile file naming its pair: :data:`WAR` (before and after the war's damage) or
#: :data:`PREWAR` (a temporal negative pair: two dates before the war, all negative).
PAIR = "pair"
WAR, PREWAR = "war", "prewar"
# The per-tile keys of a tile file and a tile dataset (damage pixels, pre-war flag) are
# contract.npz_keys.DAMAGE_PIXELS, PREWAR and TILE_EXTRA: damagenet reads them by those names.
