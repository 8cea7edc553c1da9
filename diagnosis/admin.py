from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from diagnosis.models import (
    Analysis,
    ApiClient,
    Case,
    LabResult,
    LesionImage,
    ModelVersion,
    Patient,
    RevealEvent,
    Review,
)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "weights_sha256", "active", "created_at"]
    list_filter = ["active"]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["pk", "masked_identifier", "created_by", "created_at"]
    # No search box: the query would put a hospital identifier into a URL, and so into access logs.
    readonly_fields = ["created_by", "created_at"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["pk", "patient", "status", "amended", "created_by", "created_at"]
    list_filter = ["status", "amended"]
    readonly_fields = ["patient", "created_by", "created_at", "updated_at", "version"]


@admin.register(LesionImage)
class LesionImageAdmin(admin.ModelAdmin):
    list_display = ["pk", "case", "body_part", "stage", "image_format", "uploaded_by", "uploaded_at"]
    list_filter = ["body_part", "stage"]
    # File fields appear as their names only: private files have no URL to link to.
    exclude = ["file"]
    readonly_fields = [
        "case",
        "stored_file",
        "sha256",
        "size_bytes",
        "image_format",
        "width",
        "height",
        "uploaded_by",
        "uploaded_at",
    ]

    @admin.display(description="stored file")
    def stored_file(self, obj: LesionImage) -> str:
        return obj.file.name or ""


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = ["pk", "image", "status", "label", "inconclusive", "model_version", "attempts", "queued_at"]
    list_filter = ["status", "inconclusive", "model_version"]
    exclude = ["heatmap_overlay", "heatmap"]
    readonly_fields = [f.name for f in Analysis._meta.fields if f.name not in ("heatmap_overlay", "heatmap")] + [
        "heatmap_files"
    ]

    @admin.display(description="heatmap files")
    def heatmap_files(self, obj: Analysis) -> str:
        return ", ".join(f.name or "" for f in (obj.heatmap_overlay, obj.heatmap) if f)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical decisions and lab results are immutable records: the admin shows them and nothing more."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["pk", "case", "image", "label", "confidence", "disposition", "reviewer", "amends", "created_at"]
    list_filter = ["label", "confidence", "disposition", "is_second_read"]


@admin.register(LabResult)
class LabResultAdmin(ReadOnlyAdmin):
    list_display = ["pk", "case", "pcr", "collected_on", "sample_reference", "recorded_by", "created_at"]
    list_filter = ["pcr"]


@admin.register(RevealEvent)
class RevealEventAdmin(ReadOnlyAdmin):
    list_display = ["pk", "image", "user", "created_at"]


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Read-only-ish: tokens are created, rotated and revoked with `manage.py create_api_client`."""

    list_display = ["name", "scopes", "token_prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["token_prefix", "token_sha256", "created_by", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
