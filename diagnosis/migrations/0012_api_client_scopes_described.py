from __future__ import annotations

from django.db import migrations, models

# The scopes' help text is now made from ApiClient.SCOPES, which says what each one allows.


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0011_api_client_photos_scope")]

    operations = [
        migrations.AlterField(
            model_name="apiclient",
            name="scopes",
            field=models.JSONField(
                default=list,
                help_text="Any of: submit (send photos for analysis), read (read analyses and FHIR reports), "
                "lab (record lab results), stats (read the model's statistics), photos (download lesion photos and "
                "heatmap overlays; needs read too)",
            ),
        ),
    ]
