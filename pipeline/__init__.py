"""Data preparation for war-damage mapping from Sentinel-2.

Steps, each a plain function with a command line: AOIs (:mod:`pipeline.aoi`), synthetic scenes
(:mod:`pipeline.synthetic`), scene acquisition (:mod:`pipeline.scenes`), UNOSAT labels
(:mod:`pipeline.labels.rasterise`), patches (:mod:`pipeline.patches`) and the dataset
(:mod:`pipeline.dataset`). This package never imports :mod:`damagenet`.
"""

from contract.version import __version__

__all__ = ["__version__"]
