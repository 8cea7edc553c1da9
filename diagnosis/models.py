from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

MASK = "•••••"

# How each class of the model reads on screen; the model's own class names stay the stored values.
CLASS_LABELS = {
    "chickenpox": "Chickenpox",
    "measles": "Measles",
    "monkeypox": "Mpox (monkeypox)",
    "normal": "Normal skin",
}
MPOX_CLASS = "monkeypox"


def class_label(name: str) -> str:
    return CLASS_LABELS.get(name, name.replace("_", " ").capitalize())


class ModelVersion(models.Model):
    """One set of model weights the workers have used; exactly one is active (the one the workers load)."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    weights_sha256 = models.CharField(max_length=64, unique=True)
    class_names = models.JSONField(default=list)
    metrics = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_model_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Patient(models.Model):
    hospital_identifier = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Patient {self.masked_identifier}"

    @property
    def masked_identifier(self) -> str:
        """The last four characters only: enough for a nurse to check the patient, too little to identify them."""
        return MASK + self.hospital_identifier[-4:]


class Case(models.Model):
    class Status(models.TextChoices):
        AWAITING_ANALYSIS = "awaiting_analysis", "Awaiting analysis"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        REVIEWED = "reviewed", "Reviewed"
        CLOSED = "closed", "Closed"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    # The hospital's visit number when another system sent the case (API), so results can be filed back against it.
    encounter_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cases_created")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING_ANALYSIS, db_index=True)
    amended = models.BooleanField(default=False)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Raised by every review and lab result: a form posts the version it showed, and a stale one is refused.
    version = models.PositiveIntegerField(default=0)
    # Kept up to date as analyses finish (services.case_risk_refresh), so that the queue sorts on a column: the
    # highest mpox probability of the case's photos, and that plus the queue's bonuses (ageing is added at read time).
    ai_mpox_max = models.FloatField(default=0.0)
    risk = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="case_status_created")]

    def __str__(self) -> str:
        return f"Case {self.pk}"

    def claim_holder(self, *, now: datetime) -> Any:
        """The user whose claim is still running at ``now``, or None."""
        if self.claimed_by_id is None or self.claimed_at is None:
            return None
        if self.claimed_at + timedelta(minutes=settings.MPOX_CLAIM_MINUTES) <= now:
            return None
        return self.claimed_by


class LesionImage(models.Model):
    class BodyPart(models.TextChoices):
        FACE = "face", "Face"
        HAND = "hand", "Hand"
        ARM = "arm", "Arm"
        LEG = "leg", "Leg"
        TRUNK = "trunk", "Trunk"
        FOOT = "foot", "Foot"
        GENITAL = "genital", "Genital / perianal"
        CLOSE_RANGE = "close_range", "Close-range"

    class Stage(models.TextChoices):
        EARLY = "early", "Early"
        LATER = "later", "Later"
        UNKNOWN = "unknown", "Unknown"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="images")
    # A random file name: no patient identifier ever appears in a path.
    file = models.FileField(upload_to="lesions/", max_length=200)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the file as uploaded, before metadata stripping")
    size_bytes = models.PositiveBigIntegerField(help_text="Size of the file as uploaded")
    image_format = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    body_part = models.CharField(max_length=16, choices=BodyPart.choices)
    stage = models.CharField(max_length=16, choices=Stage.choices)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["uploaded_at", "pk"]

    def __str__(self) -> str:
        return f"Image {self.pk}"

    @property
    def is_sensitive(self) -> bool:
        """Blurred in lists and thumbnails until someone deliberately reveals it."""
        return self.body_part in SENSITIVE_BODY_PARTS

    @property
    def content_type(self) -> str:
        return f"image/{self.image_format.lower()}"

    def latest_analysis(self) -> Analysis | None:
        return self.analyses.order_by("-pk").first()


SENSITIVE_BODY_PARTS = frozenset(
    {LesionImage.BodyPart.GENITAL, LesionImage.BodyPart.CLOSE_RANGE, LesionImage.BodyPart.FACE}
)


class Analysis(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Analysing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    image = models.ForeignKey(LesionImage, on_delete=models.PROTECT, related_name="analyses")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    probabilities = models.JSONField(default=dict, blank=True)
    label = models.CharField(max_length=64, blank=True)
    inconclusive = models.BooleanField(default=False)
    heatmap_overlay = models.FileField(upload_to="heatmaps/", max_length=200, blank=True)
    heatmap = models.FileField(upload_to="heatmaps/", max_length=200, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "analyses"

    def __str__(self) -> str:
        return f"Analysis {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def label_display(self) -> str:
        return class_label(self.label)

    @property
    def mpox_probability(self) -> float:
        return float(self.probabilities.get(MPOX_CLASS, 0.0))

    @property
    def mpox_percent(self) -> float:
        return 100 * self.mpox_probability

    @property
    def shows_isolation_advisory(self) -> bool:
        return self.status == self.Status.DONE and self.mpox_probability >= settings.MPOX_ADVISORY_THRESHOLD

    def probability_rows(self) -> list[dict[str, Any]]:
        """One row per class in the model's order, for the probability bars."""
        order = self.model_version.class_names if self.model_version else list(self.probabilities)
        return [
            {
                "name": name,
                "label": class_label(name),
                "percent": round(100 * float(self.probabilities.get(name, 0.0)), 1),
                "top": name == self.label,
            }
            for name in order
        ]

    def mark_failed(self, message: str) -> None:
        self.status = self.Status.FAILED
        self.error_message = message
        self.finished_at = timezone.now()

    def mark_requeued(self) -> None:
        self.status = self.Status.QUEUED
        self.queued_at = timezone.now()
        self.started_at = None


class Review(models.Model):
    """A clinician's decision on a case, or on one photo of it. Never edited: a change is a new row that amends it."""

    class Label(models.TextChoices):
        MPOX = "mpox", "Mpox"
        CHICKENPOX = "chickenpox", "Chickenpox"
        MEASLES = "measles", "Measles"
        NORMAL = "normal", "Normal skin"
        OTHER = "other", "Other skin condition"
        UNUSABLE = "unusable", "Photo unusable"

    class Confidence(models.TextChoices):
        SURE = "sure", "Sure"
        PROBABLE = "probable", "Probable"
        UNSURE = "unsure", "Unsure"

    class Disposition(models.TextChoices):
        ISOLATE_AND_TEST = "isolate_and_test", "Isolate and test"
        TEST_ONLY = "test_only", "Test only"
        DISCHARGE = "discharge", "Discharge"
        REFER_DERMATOLOGY = "refer_dermatology", "Refer to dermatology"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reviews")
    image = models.ForeignKey(LesionImage, on_delete=models.PROTECT, null=True, blank=True, related_name="reviews")
    label = models.CharField(max_length=16, choices=Label.choices)
    confidence = models.CharField(max_length=16, choices=Confidence.choices)
    disposition = models.CharField(max_length=20, choices=Disposition.choices)
    note = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    amends = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="amended_by")
    amendment_reason = models.TextField(blank=True)
    is_second_read = models.BooleanField(default=False)
    case_version = models.PositiveIntegerField(help_text="The case's version this review produced")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amends__isnull=True) | ~models.Q(amendment_reason=""),
                name="amendment_has_reason",
            )
        ]

    def __str__(self) -> str:
        return f"Review {self.pk} of case {self.case_id}"


class LabResult(models.Model):
    class Pcr(models.TextChoices):
        POSITIVE = "positive", "PCR positive"
        NEGATIVE = "negative", "PCR negative"
        INCONCLUSIVE = "inconclusive", "PCR inconclusive"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="lab_results")
    pcr = models.CharField(max_length=16, choices=Pcr.choices)
    collected_on = models.DateField()
    sample_reference = models.CharField(max_length=64)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    case_version = models.PositiveIntegerField(help_text="The case's version this result produced")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"Lab result {self.pk} of case {self.case_id}"


class RevealEvent(models.Model):
    """Who uncovered which blurred photo, and when (the audit log will read these)."""

    image = models.ForeignKey(LesionImage, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Image {self.image_id} revealed by user {self.user_id}"


class ApiClient(models.Model):
    """A hospital system that calls the REST API; only a SHA-256 hash of its token is stored."""

    # Every scope and what it allows, once: the field's help (in the admin), create_api_client's choices and help, and
    # the OpenAPI description of the token come from here. `photos` comes on top of `read`: a results consumer does
    # not get photos.
    SCOPES: ClassVar[dict[str, str]] = {
        "submit": "send photos for analysis",
        "read": "read analyses and FHIR reports",
        "lab": "record lab results",
        "stats": "read the model's statistics",
        "photos": "download lesion photos and heatmap overlays; needs read too",
    }
    SCOPES_DESCRIBED = ", ".join(f"{scope} ({allows})" for scope, allows in SCOPES.items())

    name = models.CharField(max_length=100, unique=True)
    scopes = models.JSONField(default=list, help_text=f"Any of: {SCOPES_DESCRIBED}")
    token_prefix = models.CharField(max_length=12, unique=True, help_text="Non-secret start of the token, for lookup")
    token_sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Where to POST when an analysis this client submitted finishes (diagnosis/webhooks.py). The secret signs the
    # notifications, so unlike the token it cannot be kept as a hash: the server needs it back. It is kept encrypted
    # under a key derived from SECRET_KEY (diagnosis/sealed.py); read it with sealed.unseal.
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret_sealed = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.name


class ApiIdempotencyKey(models.Model):
    """An `Idempotency-Key` an API client sent with a submission, so that a retry answers the same analysis."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_per_client")]

    def __str__(self) -> str:
        return f"Idempotency key of {self.client_id} for analysis {self.analysis_id}"


class WebhookDelivery(models.Model):
    """One completion notification to an API client's webhook; the row, not the broker, says what is still owed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="webhook_deliveries")
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="+")
    payload = models.JSONField(help_text="The JSON sent: ids, status, label and a URL; never a patient identifier")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Due time of the next try while pending; a try in progress pushes it out by a lease, so a killed worker's
    # delivery falls due again instead of being lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["client", "analysis"], name="one_webhook_per_analysis")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"Webhook delivery {self.pk} ({self.status})"


class AuditEntry(models.Model):
    """One security-relevant event. Append-only, and chained: each entry hashes its content and its predecessor's hash.

    Rows are written only by ``diagnosis.audit.audit_record``; people and systems are referenced by id plus a label
    copied at the time, and patients only by their pseudonymous row id, never by hospital identifier.
    """

    class Action(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGOUT = "logout", "Logged out"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOCKOUT = "lockout", "Locked out"
        UNLOCK = "unlock", "Unlocked a log-in"
        CASE_CREATE = "case_create", "Created a case"
        CASE_VIEW = "case_view", "Viewed a case"
        CASE_LIST_VIEW = "case_list_view", "Viewed the case list"
        QUEUE_VIEW = "queue_view", "Viewed the review queue"
        PHOTO_VIEW = "photo_view", "Viewed a photo"
        HEATMAP_VIEW = "heatmap_view", "Viewed a heatmap"
        PHOTO_REVEAL = "photo_reveal", "Revealed a sensitive photo"
        UPLOAD = "upload", "Uploaded a photo"
        ANALYSIS_DONE = "analysis_done", "Analysis completed"
        ANALYSIS_FAILED = "analysis_failed", "Analysis failed"
        CASE_CLAIM = "case_claim", "Claimed a case"
        CASE_RELEASE = "case_release", "Released a case"
        REVIEW = "review", "Recorded a review"
        AMENDMENT = "amendment", "Amended a review"
        LAB_RESULT = "lab_result", "Recorded a lab result"
        STATS_VIEW = "stats_view", "Viewed statistics"
        AUDIT_VIEW = "audit_view", "Viewed the audit log"
        EXPORT = "export", "Exported data"
        USER_CHANGE = "user_change", "Changed a user"
        ROLE_CHANGE = "role_change", "Changed a user's roles"
        MODEL_VERSION_CHANGE = "model_version_change", "Changed the active model"
        API_CLIENT_CHANGE = "api_client_change", "Changed an API client"
        API_CALL = "api_call", "API call"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        DENIED = "denied", "Denied"
        FAILED = "failed", "Failed"

    # Position in the chain, assigned under a lock; verification walks entries in this order.
    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    # Plain ids, not foreign keys: the log must outlive (and never block) changes to the rows it mentions.
    actor_user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    api_client_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_label = models.CharField(max_length=150, blank=True, help_text="Username or API client name at the time")
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    patient_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    case_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, default=Outcome.SUCCESS)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"Audit entry {self.seq}: {self.action}"

    @property
    def action_display(self) -> str:
        return self.Action(self.action).label if self.action in self.Action.values else self.action
