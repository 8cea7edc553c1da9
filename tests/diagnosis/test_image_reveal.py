from __future__ import annotations

import pytest

from diagnosis.models import RevealEvent
from tests.conftest import client_for
from tests.diagnosis.helpers import case_awaiting_review

pytestmark = pytest.mark.django_db


def test_a_sensitive_photo_is_blurred_until_revealed_and_the_reveal_is_recorded(nurse, clinician) -> None:
    case = case_awaiting_review(nurse, "V1", mpox=0.5, body_part="genital")
    image = case.images.get()
    client = client_for(clinician)
    body = client.get(f"/cases/{case.pk}/").content.decode()
    assert 'class="photo-stack blurred"' in body
    assert f'action="/images/{image.pk}/reveal"' in body

    response = client.post(f"/images/{image.pk}/reveal")
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/#image-{image.pk}"
    event = RevealEvent.objects.get()
    assert (event.image, event.user) == (image, clinician)
    body = client.get(f"/cases/{case.pk}/").content.decode()
    assert 'class="photo-stack blurred"' not in body


def test_an_arm_photo_is_not_blurred(nurse) -> None:
    case = case_awaiting_review(nurse, "V2", mpox=0.5, body_part="arm")
    assert "blurred" not in client_for(nurse).get(f"/cases/{case.pk}/").content.decode()


def test_a_reveal_needs_a_post(nurse) -> None:
    case = case_awaiting_review(nurse, "V3", mpox=0.5, body_part="face")
    assert client_for(nurse).get(f"/images/{case.images.get().pk}/reveal").status_code == 405


def test_another_nurses_photo_cannot_be_revealed(nurse, other_nurse) -> None:
    case = case_awaiting_review(other_nurse, "V4", mpox=0.5, body_part="face")
    assert client_for(nurse).post(f"/images/{case.images.get().pk}/reveal").status_code == 404
    assert not RevealEvent.objects.exists()
