from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from diagnosis.models import CLASS_LABELS, Case, LabResult, LesionImage, Review


class CaseForm(forms.Form):
    hospital_identifier = forms.CharField(
        label="Patient's hospital identifier",
        max_length=64,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9./_-]*$", "Use the identifier as printed: letters, digits, - / . or _."
            )
        ],
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
    )


class UploadForm(forms.Form):
    photo = forms.FileField(
        label="Photo",
        error_messages={
            "required": "Choose a photo to upload.",
            "empty": "The file is empty. Take the photo again.",
        },
        widget=forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/webp", "capture": "environment"}),
    )
    body_part = forms.ChoiceField(
        label="Body part",
        choices=LesionImage.BodyPart.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the body part the photo shows.", "invalid_choice": "Choose a body part."},
    )
    stage = forms.ChoiceField(
        label="Stage",
        choices=LesionImage.Stage.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the stage of the lesion.", "invalid_choice": "Choose a stage."},
    )

    def clean_photo(self) -> forms.Field:
        photo = self.cleaned_data["photo"]
        # Checked before the file is read into memory.
        if photo.size > settings.MPOX_MAX_UPLOAD_BYTES:
            limit = settings.MPOX_MAX_UPLOAD_BYTES / (1024 * 1024)
            raise forms.ValidationError(f"The photo is larger than {limit:g} MB. Take it again at a lower resolution.")
        return photo


class ReviewForm(forms.Form):
    # The case version the page showed: a save against a newer case is refused and explained.
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    image = forms.IntegerField(widget=forms.HiddenInput, required=False)
    amends = forms.IntegerField(widget=forms.HiddenInput, required=False)
    label = forms.ChoiceField(
        label="Confirmed label",
        choices=Review.Label.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the confirmed label."},
    )
    confidence = forms.ChoiceField(
        label="Confidence",
        choices=Review.Confidence.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose how sure you are."},
    )
    disposition = forms.ChoiceField(
        label="Disposition",
        choices=Review.Disposition.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose what happens to the patient."},
    )
    note = forms.CharField(label="Note", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    amendment_reason = forms.CharField(
        label="Reason for the amendment", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class LabResultForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    pcr = forms.ChoiceField(
        label="PCR result",
        choices=LabResult.Pcr.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the PCR result."},
    )
    collected_on = forms.DateField(
        label="Sample collected on",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": "Enter the date the sample was collected.", "invalid": "Enter a valid date."},
    )
    sample_reference = forms.CharField(
        label="Sample reference",
        max_length=64,
        error_messages={"required": "Enter the sample reference."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Awaiting review"), *Case.Status.choices, ("all", "Any status")]
    )
    body_part = forms.ChoiceField(required=False, choices=[("", "Any body part"), *LesionImage.BodyPart.choices])
    stage = forms.ChoiceField(required=False, choices=[("", "Any stage"), *LesionImage.Stage.choices])
    ai_label = forms.ChoiceField(
        required=False, choices=[("", "Any AI label"), *CLASS_LABELS.items(), ("inconclusive", "Inconclusive")]
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Opened since")
    reviewer = forms.CharField(required=False, max_length=150, label="Reviewed by (user name)")
    disagreement = forms.BooleanField(required=False, label="Clinicians disagree")
