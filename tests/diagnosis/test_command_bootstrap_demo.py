from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from diagnosis.models import ModelVersion

pytestmark = pytest.mark.django_db


def run(**kwargs) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("bootstrap_demo", stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_it_creates_roles_users_with_printed_passwords_and_the_active_model(predictor) -> None:
    out, _ = run()
    assert set(Group.objects.values_list("name", flat=True)) == {"nurse", "clinician", "auditor", "admin"}
    users = get_user_model().objects
    for role in ("nurse", "clinician", "auditor", "admin"):
        user = users.get(username=role)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        password = next(line.split()[1] for line in out.splitlines() if line.split()[:1] == [role])
        assert user.check_password(password)
    assert users.get(username="admin").is_superuser
    assert not users.get(username="nurse").is_staff
    assert ModelVersion.objects.get(active=True).weights_sha256 == predictor.weights_sha256
    assert "Active model:" in out


def test_it_is_idempotent_and_never_resets_a_password(predictor) -> None:
    run()
    nurse = get_user_model().objects.get(username="nurse")
    nurse.set_password("chosen-by-the-nurse")
    nurse.save()
    out, _ = run()
    assert "already exist" in out
    assert get_user_model().objects.count() == 4
    nurse.refresh_from_db()
    assert nurse.check_password("chosen-by-the-nurse")
    assert ModelVersion.objects.count() == 1


def test_it_warns_but_succeeds_without_weights(settings, tmp_path) -> None:
    from diagnosis import inference

    settings.MPOX_MODEL_WEIGHTS = tmp_path / "none.pt"
    inference.predictor_reset()
    _out, err = run()
    assert "No usable model weights" in err
    assert get_user_model().objects.count() == 4
    assert not ModelVersion.objects.exists()
