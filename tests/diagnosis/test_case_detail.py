from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, finished_analysis, image_for

pytestmark = pytest.mark.django_db


def test_the_nurse_sees_her_case_with_the_upload_form(nurse) -> None:
    case = case_for(nurse, "MRN-004821")
    response = client_for(nurse).get(f"/cases/{case.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "•••••4821" in body
    assert "MRN-004821" not in body
    assert 'accept="image/jpeg,image/png,image/webp"' in body
    assert 'capture="environment"' in body
    assert 'type="radio" name="body_part" value="close_range"' in body
    assert 'type="radio" name="stage" value="unknown"' in body


def test_a_case_with_a_queued_photo_polls_and_refreshes_without_javascript(nurse) -> None:
    case = case_for(nurse)
    image = image_for(case)
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert f'hx-get="/images/{image.pk}/status"' in body
    assert 'hx-trigger="every 1s"' in body
    assert '<noscript><meta http-equiv="refresh"' in body
    assert "Queued" in body


def test_a_finished_case_does_not_poll(nurse) -> None:
    case = case_for(nurse)
    finished_analysis(image_for(case))
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert "hx-trigger" not in body
    assert "http-equiv" not in body
    assert "Decision support, not a diagnosis." in body


def test_another_nurses_case_is_not_found(nurse, other_nurse) -> None:
    case = case_for(other_nurse)
    assert client_for(nurse).get(f"/cases/{case.pk}/").status_code == 404


def test_a_missing_case_is_not_found(nurse) -> None:
    assert client_for(nurse).get("/cases/999/").status_code == 404


def test_a_clinician_sees_any_case_and_may_upload(nurse, clinician) -> None:
    case = case_for(nurse)
    response = client_for(clinician).get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    assert b'id="upload-form"' in response.content


def test_an_auditor_sees_the_case_without_the_upload_form(nurse, auditor) -> None:
    case = case_for(nurse)
    response = client_for(auditor).get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    assert b'id="upload-form"' not in response.content


def test_anonymous_visitors_are_sent_to_log_in(nurse) -> None:
    case = case_for(nurse)
    response = Client().get(f"/cases/{case.pk}/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_patients_earlier_cases_are_listed_as_a_timeline(nurse, other_nurse) -> None:
    first = case_for(nurse, "MRN-004821")
    second = case_for(nurse, "MRN-004821")
    hidden = case_for(other_nurse, "MRN-004821")  # same patient, another nurse's case: not hers to see
    unrelated = case_for(nurse, "MRN-000001")
    body = client_for(nurse).get(f"/cases/{second.pk}/").content.decode()
    assert f'<a href="/cases/{first.pk}/">Case {first.pk}</a>' in body
    assert f'href="/cases/{hidden.pk}/"' not in body
    assert f'href="/cases/{unrelated.pk}/"' not in body


def test_each_analysed_photo_offers_zoom_and_side_by_side_through_the_checked_views(nurse) -> None:
    case = case_for(nurse)
    image = image_for(case)
    analysis = finished_analysis(image, heatmap="heatmaps/abc.png", heatmap_overlay="heatmaps/abc-overlay.png")
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    photo, overlay = f"/images/{image.pk}/photo", f"/analyses/{analysis.pk}/overlay.png"
    # Zoom without JavaScript: a link to a :target layer holding the full-size photo, and the photo in a new tab.
    assert f'<a href="#zoom-{image.pk}" class="zoom-link">Zoom</a>' in body
    assert f'id="zoom-{image.pk}"' in body
    assert f'<a href="{photo}" target="_blank" rel="noopener">Full size in a new tab</a>' in body
    # Side by side: the original and the overlay in a <details>, each opening full size.
    assert '<details class="side-by-side">' in body
    assert f'<img src="{photo}" alt="Photo {image.pk}, original" loading="lazy">' in body
    assert f'<img src="{overlay}" alt="Photo {image.pk} with the heatmap overlay" loading="lazy">' in body
    # The toggle and the opacity slider are still there.
    assert 'class="heat-toggle" checked' in body
    assert 'class="heat-opacity"' in body
    # Only the access-checked views: never a storage path or a media URL.
    assert "heatmaps/" not in body
    assert "lesions/" not in body
    assert "/private-files-are-not-served/" not in body


def test_a_photo_still_analysing_can_be_zoomed_but_has_no_side_by_side_yet(nurse) -> None:
    case = case_for(nurse)
    image = image_for(case)
    body = client_for(nurse).get(f"/cases/{case.pk}/").content.decode()
    assert f'href="#zoom-{image.pk}"' in body
    assert "side-by-side" not in body


def test_a_blurred_sensitive_photo_offers_no_zoom_until_revealed(nurse) -> None:
    case = case_for(nurse)
    image = image_for(case, body_part="genital")
    finished_analysis(image, heatmap="heatmaps/abc.png", heatmap_overlay="heatmaps/abc-overlay.png")
    client = client_for(nurse)
    body = client.get(f"/cases/{case.pk}/").content.decode()
    assert f"zoom-{image.pk}" not in body
    assert "side-by-side" not in body
    client.post(f"/images/{image.pk}/reveal")
    body = client.get(f"/cases/{case.pk}/").content.decode()
    assert f'href="#zoom-{image.pk}"' in body
    assert '<details class="side-by-side">' in body
