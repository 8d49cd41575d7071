"""Shared fixtures. `reference_dir` skips cleanly when ../shared/reference is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("VGS_REFERENCE", ROOT.parent / "shared" / "reference"))

# Keep the 2-core CI machine responsive when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference (real VAS clips, mels, features, splits, checkpoint manifests) or skip."""
    if not (REFERENCE / "README.md").is_file():
        pytest.skip("shared reference material not present")
    return REFERENCE
