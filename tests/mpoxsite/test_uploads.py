"""The upload handlers: photos read in large chunks, in memory up to the upload limit, intact either way."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import load_handler

from diagnosis.models import LesionImage
from mpoxsite.uploads import CHUNK_SIZE
from tests.conftest import client_for
from tests.diagnosis.helpers import case_for
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db


def upload(client, case, data: bytes):
    photo = SimpleUploadedFile("photo.jpg", data)
    return client.post(f"/cases/{case.pk}/images", {"photo": photo, "body_part": "arm", "stage": "early"})


@pytest.fixture
def big_photo() -> bytes:
    data = jpeg_bytes(2400, 1800, quality=98, seed=3)
    assert len(data) > 2 * CHUNK_SIZE  # spans several chunks
    return data


def test_a_photo_larger_than_a_chunk_arrives_intact(nurse, big_photo: bytes) -> None:
    assert upload(client_for(nurse), case_for(nurse), big_photo).status_code == 302
    image = LesionImage.objects.get()
    assert image.sha256 == hashlib.sha256(big_photo).hexdigest()
    assert image.size_bytes == len(big_photo)


def test_a_photo_over_the_memory_size_goes_through_a_temporary_file_intact(nurse, settings, big_photo: bytes) -> None:
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = CHUNK_SIZE
    assert upload(client_for(nurse), case_for(nurse), big_photo).status_code == 302
    assert LesionImage.objects.get().sha256 == hashlib.sha256(big_photo).hexdigest()


def test_a_photo_over_the_upload_limit_is_still_refused_with_the_limit(nurse, settings, big_photo: bytes) -> None:
    settings.MPOX_MAX_UPLOAD_BYTES = settings.FILE_UPLOAD_MAX_MEMORY_SIZE = CHUNK_SIZE
    response = upload(client_for(nurse), case_for(nurse), big_photo)
    assert response.status_code == 400
    assert "larger than 1 MB" in response.content.decode()
    assert not LesionImage.objects.exists()


def test_photos_up_to_the_upload_limit_stay_in_memory_and_are_read_in_large_chunks(settings) -> None:
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE == settings.MPOX_MAX_UPLOAD_BYTES
    for path in settings.FILE_UPLOAD_HANDLERS:
        assert load_handler(path).chunk_size == CHUNK_SIZE  # Django reads with the smallest handler's chunk size
