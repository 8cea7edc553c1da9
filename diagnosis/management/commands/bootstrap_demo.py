from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from diagnosis import services
from diagnosis.access import ROLES
from ml.checkpoint import CheckpointError


class Command(BaseCommand):
    help = (
        "Create the role groups, one demo user per role (nurse, clinician, auditor, admin) with a printed one-time "
        "password, and the active model version. Users that already exist are left alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        services.role_groups_ensure()
        users = get_user_model().objects
        created = []
        for role in ROLES:
            if users.filter(username=role).exists():
                continue
            _, password = services.user_create_with_role(username=role, role=role)
            created.append((role, password))
        if created:
            self.stdout.write("Demo users (passwords are shown once; change them in the admin):")
            for username, password in created:
                self.stdout.write(f"  {username:<10} {password}")
        else:
            self.stdout.write("Demo users already exist: " + ", ".join(ROLES))

        try:
            model_version = services.model_version_ensure_active(actor_label="manage.py bootstrap_demo")
        except (CheckpointError, FileNotFoundError) as exc:
            # Not fatal: the site runs and /healthz reports the missing model until the weights are in place.
            self.stderr.write(self.style.WARNING(f"No usable model weights at {settings.MPOX_MODEL_WEIGHTS}: {exc}"))
            return
        self.stdout.write(f"Active model: {model_version.name} {model_version.version}")
