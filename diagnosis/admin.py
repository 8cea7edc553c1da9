from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import logout
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from diagnosis import accounts, services
from diagnosis.access import ROLES, user_roles
from diagnosis.audit import audit_record
from diagnosis.models import (
    Analysis,
    ApiClient,
    AuditEntry,
    Case,
    LabResult,
    LesionImage,
    ModelVersion,
    Patient,
    RevealEvent,
    Review,
    WebhookDelivery,
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
    """Clinical decisions, lab results and the audit trail are immutable records: the admin shows them and nothing
    more, to superusers too."""

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

    list_display = ["name", "scopes", "token_prefix", "webhook_url", "created_at", "last_used_at", "revoked_at"]
    # The webhook comes with its secret (`create_api_client --set-webhook`), which is never shown again, nor is the
    # encrypted form the table holds; the admin never decrypts it.
    readonly_fields = ["token_prefix", "token_sha256", "webhook_url", "created_by", "created_at", "last_used_at"]
    exclude = ["webhook_secret_sealed"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["pk", "client", "analysis", "status", "attempts", "next_attempt_at", "last_error", "delivered_at"]
    list_filter = ["status", "client"]


class AuditActionFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in AuditEntry.Action.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail, to read: nobody adds, edits or deletes an entry here, superusers included."""

    list_display = [
        "seq",
        "at",
        "action_label",
        "outcome",
        "actor_label",
        "object_type",
        "object_id",
        "case_id",
        "source_ip",
    ]
    list_filter = [AuditActionFilter, "outcome", "object_type"]
    # Usernames, API client names and addresses only: the table holds no hospital identifier to search for.
    search_fields = ["actor_label", "source_ip"]
    date_hierarchy = "at"
    ordering = ["-seq"]

    @admin.display(description="action", ordering="action")
    def action_label(self, obj: AuditEntry) -> str:
        return obj.action_display


ROLE_CHOICES = [(role, role) for role in ROLES]


class UserChangeForm(auth_forms.UserChangeForm):
    roles = forms.MultipleChoiceField(
        choices=ROLE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Changing roles logs the user out on every device. The admin role opens this admin site.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["roles"].initial = sorted(user_roles(user=self.instance))


class UserCreationForm(auth_forms.AdminUserCreationForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin):
    """Django's user admin with roles instead of raw groups and flags; role changes go through the service that
    ends the user's sessions, and every change is audited."""

    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "roles")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "role", "usable_password", "password1", "password2")}),
    )
    readonly_fields = ["last_login", "date_joined"]
    list_display = ["username", "roles_display", "is_active", "locked_until", "last_login"]
    list_filter = ["is_active", "groups"]
    actions = ["unlock"]

    @admin.display(description="roles")
    def roles_display(self, obj: User) -> str:
        return ", ".join(sorted(user_roles(user=obj)))

    @admin.display(description="log-in locked until")
    def locked_until(self, obj: User) -> str:
        lock = accounts.login_lock_find(username=obj.get_username(), ip=None)
        return "" if lock is None else f"{timezone.localtime(lock.until):%Y-%m-%d %H:%M}"

    @admin.action(description="Unlock the log-in of the selected users")
    def unlock(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        unlocked = [
            user.get_username()
            for user in queryset
            if accounts.login_unlock(username=user.get_username(), unlocked_by=request.user, request=request)
        ]
        self.message_user(request, f"Unlocked: {', '.join(unlocked)}." if unlocked else "None was locked.")

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        fields = [name for name in form.changed_data if name not in ("roles", "role", "password1", "password2")]
        if not change:
            self._audit(request, obj, change="created", role=form.cleaned_data["role"])
        elif fields:
            self._audit(request, obj, change="updated", fields=sorted(fields))

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        roles = form.cleaned_data["roles"] if change else [form.cleaned_data["role"]]
        admin_user = request.user if isinstance(request.user, User) else None
        services.user_roles_set(user=form.instance, roles=roles, changed_by=admin_user, request=request)

    def response_change(self, request: HttpRequest, obj: User) -> HttpResponse:
        response = super().response_change(request, obj)
        if request.session.session_key and not request.session.exists(request.session.session_key):
            # An admin who changed their own roles ended their own session too: end it in this request as well, so
            # nothing tries to save it afterwards.
            logout(request)
            messages.warning(request, "You changed your own roles, which logged you out: log in again.")
        return response

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # The password page saves outside save_model; Django calls this right after it saves.
        if request.resolver_match is not None and request.resolver_match.url_name == "auth_user_password_change":
            self._audit(request, obj, change="password")
        return super().log_change(request, obj, message)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self._audit(request, obj, change="deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self._audit(request, user, change="deleted")
        super().delete_queryset(request, queryset)

    def _audit(self, request: HttpRequest, user: User, **detail: Any) -> None:
        audit_record(action=AuditEntry.Action.USER_CHANGE, user=request.user, request=request, obj=user, detail=detail)
