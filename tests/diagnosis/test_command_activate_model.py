from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from diagnosis.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_it_activates_the_configured_weights(predictor) -> None:
    out = io.StringIO()
    call_command("activate_model", stdout=out)
    active = ModelVersion.objects.get(active=True)
    assert active.weights_sha256 == predictor.weights_sha256
    assert out.getvalue() == f"Active model: {active.version}\n"


def test_it_fails_loudly_without_weights(settings, tmp_path) -> None:
    from diagnosis import inference

    settings.MPOX_MODEL_WEIGHTS = tmp_path / "none.pt"
    inference.predictor_reset()
    with pytest.raises(CommandError, match="no usable model weights"):
        call_command("activate_model")
    assert not ModelVersion.objects.exists()
