from __future__ import annotations

from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self) -> None:
        # Connects the receivers that record log-ins, log-outs and failed log-ins.
        from diagnosis import accounts  # noqa: F401
