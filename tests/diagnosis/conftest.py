from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django.fixtures import Settings


@pytest.fixture(autouse=True)
def private_storage(settings: Settings, tmp_path: Path) -> Path:
    """Each test stores its photos and heatmaps in its own folder."""
    root = tmp_path / "private"
    settings.MEDIA_ROOT = root
    return root
