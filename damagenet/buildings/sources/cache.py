"""The cache of fetched footprints and boundaries: one data file and one provenance JSON per query.

Files live under ``<data>/buildings/<aoi>/`` (footprints) and ``<data>/districts/`` (boundaries,
country-wide, shared by AOIs), named by source and a hash of what was asked (service address,
release, box), so a changed box or mirror fetches again and an unchanged one never does. The
data file is written to a temporary name and renamed; the provenance JSON is renamed last and
is the mark of a complete entry, so an interrupted fetch leaves nothing that looks cached (at
most a hidden ``.*.part*`` file, or a data file without its JSON, which the next run replaces).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """A cached data file and its provenance (source, release, query, licence, attribution)."""

    path: Path
    provenance: dict[str, Any]
    from_cache: bool


def key_of(query: dict[str, Any]) -> str:
    """A short stable hash of the query (what was asked of whom)."""
    text = json.dumps(query, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached(
    folder: Path,
    stem: str,
    suffix: str,
    query: dict[str, Any],
    fetch: Callable[[Path], dict[str, Any]],
) -> Entry:
    """The cache entry for ``query``; ``fetch(tmp_path)`` writes a missing one and returns its
    provenance (release, licence, counts), which is stored beside it with the query."""
    name = f"{stem}-{key_of(query)}"
    data, meta = folder / f"{name}{suffix}", folder / f"{name}.json"
    known = _provenance(meta) if data.exists() else None
    if known is not None:
        log.info("%s: read from the cache (%s)", stem, data)
        return Entry(data, known, True)
    with atomic_path(data) as tmp:
        provenance = {"query": query, **fetch(tmp)}
        provenance["fetched_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_text_atomic(meta, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    log.info("%s: fetched and cached in %s", stem, data)
    return Entry(data, provenance, False)


def _provenance(meta: Path) -> dict[str, Any] | None:
    """The stored provenance, or None when missing or unreadable (the entry is fetched again)."""
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
