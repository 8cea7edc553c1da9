from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from diagnosis import services
from ml.checkpoint import CheckpointError


class Command(BaseCommand):
    help = "Make the weights at MPOX_MODEL_WEIGHTS the active model version (run at deployment, after migrate)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model_version = services.model_version_ensure_active(actor_label="manage.py activate_model")
        except (CheckpointError, FileNotFoundError) as exc:
            raise CommandError(f"no usable model weights at {settings.MPOX_MODEL_WEIGHTS}: {exc}") from exc
        self.stdout.write(f"Active model: {model_version.version}")
