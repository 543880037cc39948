"""A model's page probes each current snapshot for the name (ModelFile.Meta.indexes)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_admin", "0010_api_token_digests"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="modelfile",
            index=models.Index(fields=["snapshot", "name"], name="modelfile_snapshot_name"),
        ),
    ]
