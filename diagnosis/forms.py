from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from diagnosis.models import LesionImage


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
