"""Synthetic Sentinel-2 scene pairs, UNOSAT-style damage sites and footprints for one AOI.

The offline test bed and demo engine (``docs/synthetic-data.md``): :mod:`.town` runs one town
end to end, :mod:`.layout` and :mod:`.render` make the realistic town, :mod:`.landscape` and
:mod:`.damage` the easy one, :mod:`.nuisances` the acquisition problems, :mod:`.unosat_points`
the damage sites and :mod:`.cli` the ``pipeline synthetic`` command.
"""

from __future__ import annotations

from typing import Any

from pipeline.synthetic.options import MODES

__all__ = ["MODES", "Nuisances", "SyntheticScenes", "generate_synthetic"]
_FROM_TOWN = ("Nuisances", "SyntheticScenes", "generate_synthetic")


def __getattr__(name: str) -> Any:
    """The town's names on first use: importing the package (its command line) stays light."""
    if name in _FROM_TOWN:
        from pipeline.synthetic import town

        return getattr(town, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
