"""Password rules for hospital accounts: at least 12 characters, not a common password, not the username."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command

from diagnosis.access import ROLES

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Wd7-short-1", "at least 12 characters"),
        ("password1234", "too common"),
        ("clinician-smith", "too similar to the username"),
    ],
)
def test_weak_passwords_are_refused(password: str, message: str) -> None:
    user = get_user_model()(username="clinician-smith")
    with pytest.raises(ValidationError, match=message):
        validate_password(password, user)


def test_a_long_uncommon_password_passes() -> None:
    validate_password("Ward7-night-rota-2026", get_user_model()(username="clinician-smith"))


def test_the_demo_users_passwords_pass_the_rules() -> None:
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out, stderr=io.StringIO())
    passwords = dict(re.findall(r"^  (\w+)\s+(\S+)$", out.getvalue(), re.MULTILINE))
    assert sorted(passwords) == sorted(ROLES)
    for username, password in passwords.items():
        validate_password(password, get_user_model().objects.get(username=username))
