from __future__ import annotations

import pytest

from diagnosis.models import Analysis
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


def status(client, image):
    return client.get(f"/images/{image.pk}/status", headers={"HX-Request": "true"})


def test_a_queued_photo_keeps_polling(nurse) -> None:
    image = image_for(case_for(nurse))
    response = status(client_for(nurse), image)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in body
    assert "Queued" in body
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_a_running_analysis_says_it_is_analysing(nurse) -> None:
    image = image_for(case_for(nurse))
    Analysis.objects.update(status=Analysis.Status.RUNNING)
    response = status(client_for(nurse), image)
    assert response.status_code == 200
    assert "Analysing" in response.content.decode()


def test_a_done_analysis_stops_polling_and_shows_the_result(nurse) -> None:
    image = image_for(case_for(nurse))
    finished_analysis(image)
    response = status(client_for(nurse), image)
    body = response.content.decode()
    assert response.status_code == 286
    assert "hx-trigger" not in body
    assert "Most likely: <strong>Mpox (monkeypox)</strong>" in body
    assert body.count('<span class="bar">') == 4
    assert "80.0 %" in body
    assert "Decision support, not a diagnosis." in body
    assert "Isolate the patient" in body  # 0.8 is above the advisory threshold
    assert "Inconclusive" not in body


def test_a_low_mpox_probability_shows_no_advisory(nurse) -> None:
    image = image_for(case_for(nurse))
    finished_analysis(
        image, probabilities={"chickenpox": 0.7, "measles": 0.1, "monkeypox": 0.1, "normal": 0.1}, label="chickenpox"
    )
    body = status(client_for(nurse), image).content.decode()
    assert "Most likely: <strong>Chickenpox</strong>" in body
    assert "Isolate the patient" not in body


def test_an_inconclusive_result_asks_for_a_clinician(nurse) -> None:
    image = image_for(case_for(nurse))
    finished_analysis(
        image,
        probabilities={"chickenpox": 0.3, "measles": 0.3, "monkeypox": 0.2, "normal": 0.2},
        label="chickenpox",
        inconclusive=True,
    )
    body = status(client_for(nurse), image).content.decode()
    assert "Inconclusive" in body
    assert "Ask a clinician" in body


def test_a_failed_analysis_stops_polling_and_shows_the_message(nurse) -> None:
    image = image_for(case_for(nurse))
    analysis = image.analyses.get()
    analysis.mark_failed("The photo file is damaged or incomplete. Please take or send it again.")
    analysis.save()
    response = status(client_for(nurse), image)
    assert response.status_code == 286
    assert "damaged or incomplete" in response.content.decode()


def test_another_nurses_photo_is_not_found(nurse, other_nurse) -> None:
    image = image_for(case_for(other_nurse))
    assert status(client_for(nurse), image).status_code == 404
