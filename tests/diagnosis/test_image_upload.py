from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from diagnosis.models import Analysis, AuditEntry, LesionImage
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for
from tests.photos import jpeg_bytes, other_format_bytes, pixel_flood_png, png_bytes, webp_bytes

pytestmark = pytest.mark.django_db


def upload(client, case, data: bytes, name: str = "photo.jpg", *, script: bool = False, **tags: str):
    """``script``: sent as the case page's upload script sends it (an XHR marked as htmx's)."""
    fields = {"body_part": "arm", "stage": "early", **tags}
    fields = {key: value for key, value in fields.items() if value is not None}
    headers = {"HX-Request": "true"} if script else {}
    return client.post(f"/cases/{case.pk}/images", {"photo": SimpleUploadedFile(name, data), **fields}, headers=headers)


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_a_nurse_uploads_a_tagged_photo_and_it_is_queued(nurse, private_storage, django_capture_on_commit_callbacks):
    case = case_for(nurse)
    original = jpeg_bytes(gps=True)
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(client_for(nurse), case, original, body_part="close_range", stage="later")

    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/#photos"
    image = LesionImage.objects.get()
    assert (image.case, image.uploaded_by) == (case, nurse)
    assert (image.body_part, image.stage, image.image_format) == ("close_range", "later", "JPEG")
    assert (image.width, image.height) == (640, 480)
    assert image.sha256 == hashlib.sha256(original).hexdigest()
    assert image.size_bytes == len(original)
    analysis = image.analyses.get()
    assert analysis.status == Analysis.Status.QUEUED
    assert len(callbacks) == 1  # the task is sent only once the transaction has committed

    # The photo, and its decode at the model's scale that the upload leaves for the worker (raw pixels, no EXIF).
    stored, decoded = sorted(stored_files(private_storage), key=lambda path: len(path.name))
    assert decoded.name == f"{stored.name}.decoded.ppm"
    assert stored.parent.name == "lesions"
    assert len(stored.stem) == 32
    assert stored.suffix == ".jpg"
    with Image.open(stored) as kept:
        assert not kept.getexif()  # GPS and the rest of EXIF are gone from the stored copy


@pytest.mark.parametrize(
    ("data", "name", "fmt"),
    [(png_bytes(), "lesion.png", "PNG"), (webp_bytes(), "lesion.webp", "WEBP"), (png_bytes(), "lesion.jpg", "PNG")],
)
def test_it_accepts_png_and_webp_by_content(nurse, data: bytes, name: str, fmt: str) -> None:
    response = upload(client_for(nurse), case_for(nurse), data, name)
    assert response.status_code == 302
    assert LesionImage.objects.get().image_format == fmt


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes()
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "not_an_image_named_jpg": (b"%PDF-1.4 this is a letter, not a photo" * 20, "photo.jpg", "not a photo"),
    "truncated_jpeg": (_truncated_jpeg(), "photo.jpg", "damaged or incomplete"),
    "zero_bytes": (b"", "photo.jpg", "empty"),
    "pixel_flood": (pixel_flood_png(), "photo.png", "too many pixels"),
    "gif": (other_format_bytes("GIF"), "photo.gif", "not supported"),
    "bmp": (other_format_bytes("BMP"), "photo.bmp", "not supported"),
}


@pytest.mark.parametrize("case_name", list(BAD_UPLOADS))
def test_it_rejects_a_bad_file_and_stores_nothing(nurse, private_storage, case_name: str) -> None:
    data, name, message = BAD_UPLOADS[case_name]
    response = upload(client_for(nurse), case_for(nurse), data, name)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LesionImage.objects.exists()
    assert not Analysis.objects.exists()
    assert stored_files(private_storage) == []


def test_it_rejects_a_photo_over_the_size_limit(nurse, settings, private_storage) -> None:
    settings.MPOX_MAX_UPLOAD_BYTES = 50_000
    data = jpeg_bytes(1200, 900, quality=98)
    assert len(data) > 50_000
    response = upload(client_for(nurse), case_for(nurse), data)
    assert response.status_code == 400
    assert "larger than" in response.content.decode()
    assert not LesionImage.objects.exists()
    assert stored_files(private_storage) == []


def test_it_rejects_a_photo_over_the_pixel_limit(nurse, settings, private_storage) -> None:
    settings.MPOX_MAX_PIXELS = 100_000
    response = upload(client_for(nurse), case_for(nurse), jpeg_bytes(640, 480))
    assert response.status_code == 400
    assert "too many pixels" in response.content.decode()
    assert not LesionImage.objects.exists()


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"body_part": None}, "Choose the body part"),
        ({"stage": None}, "Choose the stage"),
        ({"body_part": "elbow"}, "Choose a body part"),
        ({"stage": "ancient"}, "Choose a stage"),
    ],
)
def test_it_rejects_missing_or_invalid_tags(nurse, private_storage, tags: dict, message: str) -> None:
    response = upload(client_for(nurse), case_for(nurse), jpeg_bytes(), **tags)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LesionImage.objects.exists()
    assert stored_files(private_storage) == []


def test_it_asks_for_a_photo_when_none_is_sent(nurse) -> None:
    case = case_for(nurse)
    response = client_for(nurse).post(f"/cases/{case.pk}/images", {"body_part": "arm", "stage": "early"})
    assert response.status_code == 400
    assert "Choose a photo" in response.content.decode()


def test_the_rejected_form_keeps_the_chosen_tags(nurse) -> None:
    response = upload(client_for(nurse), case_for(nurse), b"nope", "x.jpg", body_part="foot", stage="later")
    body = response.content.decode()
    assert re.search(r'name="body_part" value="foot"[^>]* checked', body)
    assert re.search(r'name="stage" value="later"[^>]* checked', body)


def test_an_auditor_cannot_upload(nurse, auditor, private_storage) -> None:
    response = upload(client_for(auditor), case_for(nurse), jpeg_bytes())
    assert response.status_code == 403
    assert not LesionImage.objects.exists()
    assert stored_files(private_storage) == []


def test_a_nurse_cannot_upload_to_another_nurses_case(nurse, other_nurse) -> None:
    response = upload(client_for(nurse), case_for(other_nurse), jpeg_bytes())
    assert response.status_code == 404
    assert not LesionImage.objects.exists()


def test_a_clinician_can_upload_to_any_case(nurse, clinician) -> None:
    response = upload(client_for(clinician), case_for(nurse), jpeg_bytes())
    assert response.status_code == 302
    assert LesionImage.objects.get().uploaded_by == clinician


def test_anonymous_uploads_are_sent_to_log_in(nurse, client) -> None:
    response = upload(client, case_for(nurse), jpeg_bytes())
    assert response.status_code == 302
    assert not LesionImage.objects.exists()


def test_exif_orientation_is_baked_into_the_stored_copy(nurse, private_storage) -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (400, 200), (200, 150, 130)).save(out, format="JPEG", exif=exif)
    upload(client_for(nurse), case_for(nurse), out.getvalue())
    image = LesionImage.objects.get()
    assert (image.width, image.height) == (200, 400)


def test_the_page_script_gets_the_new_photo_s_card_instead_of_the_whole_page(nurse) -> None:
    case = case_for(nurse)
    response = upload(client_for(nurse), case, png_bytes(), "lesion.png", script=True, body_part="hand")
    assert response.status_code == 201
    image = LesionImage.objects.get()
    body = response.content.decode()
    assert f'id="image-{image.pk}"' in body
    assert f'hx-get="/images/{image.pk}/status"' in body  # the card polls for its own result
    assert "Queued" in body
    assert f'<option value="{image.pk}">Photo {image.pk}: Hand</option>' in body  # for the review form's list
    assert "<html" not in body
    assert "Add a photo" not in body
    assert image.analyses.get().status == Analysis.Status.QUEUED


def test_a_script_upload_is_recorded_and_is_no_case_view(nurse) -> None:
    case = case_for(nurse)
    assert upload(client_for(nurse), case, png_bytes(), "lesion.png", script=True).status_code == 201
    assert AuditEntry.objects.filter(action="upload", object_id=str(LesionImage.objects.get().pk)).count() == 1
    assert not AuditEntry.objects.filter(action="case_view").exists()


def test_a_script_upload_of_a_bad_file_is_refused_with_the_form_and_its_message(nurse, private_storage) -> None:
    response = upload(client_for(nurse), case_for(nurse), b"not a photo at all", script=True)
    assert response.status_code == 400
    assert 'id="upload"' in response.content.decode()
    assert "not a photo" in response.content.decode()
    assert not LesionImage.objects.exists()
    assert stored_files(private_storage) == []


def test_an_upload_runs_a_fixed_number_of_queries(nurse, django_assert_max_num_queries) -> None:
    case = case_for(nurse)
    client = client_for(nurse)
    for seed in range(3):  # the photos already on the case cost nothing
        upload(client, case, png_bytes(seed=seed), "lesion.png", script=True)
    # Session, user, roles, case, the two rows, the audit chain's head and entry (and its lock on PostgreSQL), the
    # card's analysis, 4 savepoints.
    with django_assert_max_num_queries(13 + (connection.vendor == "postgresql")):
        assert upload(client, case, png_bytes(seed=9), "lesion.png", script=True).status_code == 201
