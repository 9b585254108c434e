"""The shared contract of the two packages: what ``pipeline`` writes and ``damagenet`` reads.

``pipeline`` (data preparation) and ``damagenet`` (the model) never import each other; the
conventions both must agree on live here once: band order and scene nodata (:mod:`.bands`),
label codes (:mod:`.labels`), NPZ keys (:mod:`.npz_keys`), COG creation options (:mod:`.cog`)
and the write-to-temporary-then-rename rule (:mod:`.atomic`). This package imports neither.
"""
