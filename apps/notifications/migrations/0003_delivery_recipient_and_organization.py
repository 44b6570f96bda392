"""Deliveries may email a person (an approver) instead of a channel, and carry their organization."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def organization_from_channel(apps, schema_editor):
    Delivery = apps.get_model("notifications", "Delivery")
    Channel = apps.get_model("notifications", "Channel")
    Delivery.objects.filter(organization__isnull=True).update(
        organization=models.Subquery(Channel.objects.filter(pk=models.OuterRef("channel_id")).values("organization_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0001_initial"),
        ("notifications", "0002_channel_target_out_of_history"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="organization",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="tenancy.organization",
            ),
        ),
        migrations.AddField(
            model_name="delivery",
            name="recipient",
            field=models.ForeignKey(
                blank=True,
                help_text="A person emailed at their address (instead of a channel).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="email_deliveries",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="channel",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="notifications.channel",
            ),
        ),
        migrations.RunPython(organization_from_channel, migrations.RunPython.noop),
    ]
