from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.diagnosis.helpers import case_for, image_for
from tests.photos import png_bytes

pytestmark = pytest.mark.django_db


def test_the_nurse_gets_the_stored_photo_with_private_headers(nurse) -> None:
    image = image_for(case_for(nurse))
    response = client_for(nurse).get(f"/images/{image.pk}/photo")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    with image.file.open("rb") as handle:
        assert response.getvalue() == handle.read()


def test_a_png_is_served_as_png(nurse) -> None:
    image = image_for(case_for(nurse), data=png_bytes())
    assert client_for(nurse).get(f"/images/{image.pk}/photo")["Content-Type"] == "image/png"


def test_a_clinician_and_an_auditor_may_see_it(nurse, clinician, auditor) -> None:
    image = image_for(case_for(nurse))
    for user in (clinician, auditor):
        assert client_for(user).get(f"/images/{image.pk}/photo").status_code == 200


def test_another_nurse_may_not(nurse, other_nurse) -> None:
    image = image_for(case_for(nurse))
    assert client_for(other_nurse).get(f"/images/{image.pk}/photo").status_code == 404


def test_anonymous_visitors_may_not(nurse) -> None:
    image = image_for(case_for(nurse))
    response = Client().get(f"/images/{image.pk}/photo")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_lost_file_is_not_found(nurse) -> None:
    image = image_for(case_for(nurse))
    image.file.delete(save=False)
    assert client_for(nurse).get(f"/images/{image.pk}/photo").status_code == 404
