"""The overlay (/analyses/<id>/overlay.png) and heatmap-only (/analyses/<id>/heatmap.png) views."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from diagnosis import services
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed(nurse, predictor):
    image = image_for(case_for(nurse))
    return services.analysis_run(analysis_id=image.analyses.get().pk)


@pytest.mark.parametrize(("path", "mode"), [("overlay.png", "RGB"), ("heatmap.png", "RGBA")])
def test_the_nurse_gets_the_png_with_private_headers(nurse, analysed, path: str, mode: str) -> None:
    response = client_for(nurse).get(f"/analyses/{analysed.pk}/{path}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    with Image.open(io.BytesIO(response.getvalue())) as png:
        assert png.format == "PNG"
        assert png.mode == mode


@pytest.mark.parametrize("path", ["overlay.png", "heatmap.png"])
def test_another_nurse_may_not_see_it(other_nurse, analysed, path: str) -> None:
    assert client_for(other_nurse).get(f"/analyses/{analysed.pk}/{path}").status_code == 404


@pytest.mark.parametrize("path", ["overlay.png", "heatmap.png"])
def test_a_queued_analysis_has_no_heatmap_yet(nurse, path: str) -> None:
    image = image_for(case_for(nurse))
    assert client_for(nurse).get(f"/analyses/{image.analyses.get().pk}/{path}").status_code == 404
