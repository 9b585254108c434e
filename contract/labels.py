"""Label raster codes: ground UNOSAT did not assess is unknown, never undamaged."""

from __future__ import annotations

DAMAGE = 1
NO_DAMAGE = 0
UNKNOWN = 255
#: The meaning of the codes, as written into label rasters' tags and help texts.
VALUES_TEXT = "1 damage, 0 assessed and not damaged, 255 unknown"
