"""Siamese ResNet change detection for war damage: model, training, evaluation and maps.

Reads the dataset NPZ and scene GeoTIFFs the :mod:`pipeline` package writes, through files only;
it never imports :mod:`pipeline`.
"""

from contract.version import __version__

__all__ = ["__version__"]
