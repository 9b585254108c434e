"""Open building footprints and district boundaries fetched for an AOI and cached under ``data/``.

A user with a bounding box should get per-building and per-district counts without hunting for
files. :mod:`.osm` asks an Overpass API interpreter for the buildings in the box,
:mod:`.overture` reads Overture Maps' building GeoParquet with row-group pruning on its ``bbox``
columns, :mod:`.geoboundaries` downloads administrative units through the geoBoundaries API.
Each result is written once, atomically, into :mod:`.cache` with its source, release, query,
licence and attribution, so a rerun reads the cache and never the network.
"""
