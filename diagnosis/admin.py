from __future__ import annotations

from django.contrib import admin

from diagnosis.models import Analysis, Case, LesionImage, ModelVersion, Patient


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
    list_display = ["pk", "patient", "status", "created_by", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["patient", "created_by", "created_at", "updated_at"]


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
