"""Every delivery has its organization; exactly one of channel and recipient (a separate migration:
PostgreSQL cannot alter a table with the previous migration's row updates pending)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_delivery_recipient_and_organization"),
    ]

    operations = [
        migrations.AlterField(
            model_name="delivery",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="tenancy.organization",
            ),
        ),
        migrations.AddConstraint(
            model_name="delivery",
            constraint=models.CheckConstraint(
                condition=models.Q(("channel__isnull", False), ("recipient__isnull", True))
                | models.Q(("channel__isnull", True), ("recipient__isnull", False)),
                name="delivery_channel_or_recipient",
            ),
        ),
    ]
