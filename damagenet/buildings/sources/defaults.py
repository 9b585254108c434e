"""The public services' addresses and choices: the defaults of ``damagenet aggregate``'s options.

Imports nothing, so ``damagenet aggregate --help`` shows them without loading the readers.
"""

#: Overpass API interpreter (OpenStreetMap)
OSM_URL = "https://overpass-api.de/api/interpreter"
#: Overture Maps' public S3 bucket (``release/<version>/theme=buildings/type=building/``)
OVERTURE_URL = "https://overturemaps-us-west-2.s3.us-west-2.amazonaws.com"
#: geoBoundaries API (``<url>/<ISO>/<LEVEL>/`` answers the metadata JSON)
GEOBOUNDARIES_URL = "https://www.geoboundaries.org/api/current/gbOpen"
#: geoBoundaries' geometries: full detail or simplified
DISTRICT_DETAILS = ("full", "simplified")
