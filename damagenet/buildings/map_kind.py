"""What a map to aggregate holds: a damage probability, PWTT's t statistic T, or the fused z.

All are summed per footprint the same way, but they are read differently: a probability is
damaged at or above a threshold in (0, 1) (the map's own, from its tag or summary), T above a
threshold on the t scale (PWTT's 3.3 unless the map's THRESHOLD tag says otherwise), the
training-free radar + optical z-sum above its own (3 no-change standard deviations unless the
tag says otherwise); the columns and styles say which (``probability_mean``, ``t_mean``,
``fused_z_mean``). The kind is read from what the writers put in the file: the band description
(``damage_probability`` from ``damagenet predict``, ``pwtt_T`` or ``pwtt_max_t_unsmoothed`` from
``damagenet pwtt``, ``fused_z`` from ``damagenet fuse``) or a ``PRODUCT`` tag starting with
"PWTT"; a band without a description is taken as a probability (maps from other tools), and any
other band (a class map, a backscatter backdrop) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import rasterio

from damagenet.errors import DamagenetUsageError, InputFileError
from damagenet.maps.writers import PROB
from damagenet.outputs import map_outputs
from damagenet.qgis.vector_styles import BUILDING_RULES, rule_qml
from damagenet.radar import DEFAULT_THRESHOLD
from damagenet.radar.fused_map import DEFAULT_THRESHOLD as FUSED_THRESHOLD
from damagenet.radar.fused_map import FUSED_LAYER
from damagenet.radar.outputs import RAW_T_LAYER, T_LAYER


@dataclass(frozen=True)
class MapKind:
    """How the map's values are named, thresholded and explained."""

    name: str  # "probability", "pwtt_t" or "fused_z"
    column: str  # per-building column stem: probability_mean / t_mean / fused_z_mean
    statistic: str  # what the mean is of, in words
    strict: bool  # damaged when value > threshold (T, z) rather than >= (probability)
    default_threshold: float | None

    @property
    def rule(self) -> str:
        return f"area-weighted {self.statistic} {'>' if self.strict else '>='} threshold"

    def damaged_label(self, threshold: float) -> str:
        return f"damaged ({self.statistic} {'>' if self.strict else '>='} {threshold:g})"


PROBABILITY = MapKind("probability", "probability", "mean probability", False, None)
PWTT_T = MapKind("pwtt_t", "t", "mean T", True, DEFAULT_THRESHOLD)
FUSED_Z = MapKind("fused_z", "fused_z", "mean fused z", True, FUSED_THRESHOLD)
#: every per-building column a map kind writes (an input attribute of the same name is renamed)
STAT_COLUMNS = frozenset(
    f"{k.column}_{s}" for k in (PROBABILITY, PWTT_T, FUSED_Z) for s in ("mean", "max")
)


def detect(path: Path, src: rasterio.DatasetReader) -> MapKind:
    """PWTT's T map if its band description or PRODUCT tag says so, a probability map if its
    band says so or says nothing; any other band is refused with what was found."""
    description = (src.descriptions[0] or "") if src.descriptions else ""
    product = src.tags().get("PRODUCT", "")
    if description in (T_LAYER.description, RAW_T_LAYER.description):
        return PWTT_T
    if description == FUSED_LAYER.description:
        return FUSED_Z
    if product.upper().startswith("PWTT") and not description:
        return PWTT_T
    if description in ("", PROB.description):
        return PROBABILITY
    raise InputFileError(
        f"{path}: band 1 is '{description}', not a damage probability "
        f"('{PROB.description}', damagenet predict), PWTT's T ('{T_LAYER.description}', "
        f"damagenet pwtt) or the fused z ('{FUSED_LAYER.description}', damagenet fuse); pass "
        "one of those maps, not a class map or backdrop"
    )


def threshold_of(
    path: Path, src: rasterio.DatasetReader, kind: MapKind, given: str | float
) -> tuple[float, str]:
    """The threshold and where it came from; a probability threshold must lie in (0, 1)."""
    if given != "auto":
        value = float(given)
        if kind is PROBABILITY and not 0 < value < 1:
            raise DamagenetUsageError(
                f"--threshold {value:g}: {path.name} is a probability map; give a value in (0, 1)"
            )
        return value, "--threshold"
    tag = src.tags().get("THRESHOLD")
    if tag is not None:
        return float(tag), f"{path.name} tag THRESHOLD"
    if kind.default_threshold is not None:
        return kind.default_threshold, f"the default for a {kind.name} map"
    return _summary_threshold(path)


def _summary_threshold(path: Path) -> tuple[float, str]:
    """The threshold in the probability map's summary JSON (maps written without the tag)."""
    summary = map_outputs(path)["summary"]
    if summary.exists():
        try:
            value = json.loads(summary.read_text(encoding="utf-8")).get("threshold")
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{summary}: cannot read the map's summary ({exc})") from exc
        if value is not None:
            return float(value), f"{summary.name} threshold"
    raise InputFileError(
        f"{path}: the map's threshold is unknown (no THRESHOLD tag, no "
        f"{summary.name}); pass --threshold 0.5 (or another value)"
    )


def buildings_qml(kind: MapKind, threshold: float) -> str:
    """The building layer's QGIS style: the shared rules, with the map's own column in the
    no-data rule and the threshold in the damaged rule's label."""
    rules = []
    for expr, label, fill, line, style, line_style in BUILDING_RULES:
        expr = expr.replace('"probability_mean"', f'"{kind.column}_mean"')
        if label == "damaged":
            label = kind.damaged_label(threshold)
        rules.append((expr, label, fill, line, style, line_style))
    return rule_qml(rules)
