from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> None:
    """Tiny models run faster on one thread, and far faster than on two that contend with a training job."""
    torch.set_num_threads(1)
