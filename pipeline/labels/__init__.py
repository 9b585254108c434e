"""Labels from UNOSAT damage assessments.

:mod:`.unosat` reads the sites in every layout UNOSAT ships, :mod:`.unosat_values` maps its
class and date values, :mod:`.fetch` downloads the files, :mod:`.rasterise` burns the sites
into the AOI's label raster (1 damage, 0 assessed and undamaged, 255 unknown).
"""

#: Pixels whose centre lies within this distance of a site are burnt (one 10 m pixel).
DEFAULT_RADIUS_M = 10.0
