"""The model, loaded once per worker process.

Only the worker imports this module (through ``analysis_run`` and the worker start-up signal), which keeps torch
out of the web processes.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from ml.inference import Predictor

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_predictor: Predictor | None = None


def predictor_get() -> Predictor:
    """The process's Predictor for ``MPOX_MODEL_WEIGHTS``, loaded on first use."""
    global _predictor
    with _lock:
        if _predictor is None:
            _predictor = Predictor.load(
                settings.MPOX_MODEL_WEIGHTS,
                backend=settings.MPOX_INFERENCE_BACKEND,  # type: ignore[arg-type]  # validated in settings
                threads=settings.MPOX_INFERENCE_THREADS or None,
            )
            logger.info("loaded model %s (%s backend)", _predictor.version, _predictor.backend)
        return _predictor


def predictor_reset() -> None:
    """Forget the loaded model (tests that switch weights, or a worker told to reload)."""
    global _predictor
    with _lock:
        _predictor = None
