from __future__ import annotations

from tests.diagnosis.conftest import private_storage

__all__ = ["private_storage"]
