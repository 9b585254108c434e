"""Where the project and the material beside it lie, for tests in any folder."""

from __future__ import annotations

from pathlib import Path

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
#: ``../shared`` beside the repository: reference facts and the OSCD cities (may be absent).
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"
#: The synthetic towns the session fixtures render (the demo's AOIs).
DEMO_AOIS = ("bucha", "irpin", "hostomel")
