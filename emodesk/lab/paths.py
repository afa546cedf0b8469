"""Where the lab writes: the source checkout it runs from (the lab only runs from one)."""

from __future__ import annotations

from pathlib import Path

#: the repository root: ``models/``, ``assets/``, ``docs/`` and ``build/`` are under it
REPO = Path(__file__).resolve().parents[2]
