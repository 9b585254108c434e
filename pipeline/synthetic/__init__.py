"""Synthetic Sentinel-2 scene pairs, UNOSAT-style damage sites and footprints for one AOI.

The offline test bed and demo engine (``docs/synthetic-data.md``): :mod:`.town` runs one town
end to end, :mod:`.layout` and :mod:`.render` make the realistic town, :mod:`.landscape` and
:mod:`.damage` the easy one, :mod:`.nuisances` the acquisition problems, :mod:`.unosat_points`
the damage sites and :mod:`.cli` the ``pipeline synthetic`` command.
"""

from pipeline.synthetic.town import MODES, Nuisances, SyntheticScenes, generate_synthetic

__all__ = ["MODES", "Nuisances", "SyntheticScenes", "generate_synthetic"]
