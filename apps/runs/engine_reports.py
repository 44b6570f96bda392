"""What an external engine reports about a run it claimed: the status, and the measurements in the
shape the built-in executor records (apps.runs.profiles), validated so baselines compare like with like."""

from rest_framework import serializers

from apps.core.api import StrictSerializer

from . import profiles, values
from .models import RunStatus


class ProfileValueField(serializers.JSONField):
    """A canonical value of a profile: null, an integer or text (decimals and dates as text)."""

    def to_internal_value(self, data):
        if data is not None and (isinstance(data, bool) or not isinstance(data, int | str)):
            raise serializers.ValidationError("null, an integer or a string (decimals and dates as text).")
        if isinstance(data, str) and len(data) > profiles.TEXT_SHOWN + 1:
            raise serializers.ValidationError(f"At most {profiles.TEXT_SHOWN + 1} characters.")
        return data


class ColumnProfileSerializer(StrictSerializer):
    """One column's profile, the shape the built-in executor records (apps.runs.profiles)."""

    type = serializers.ChoiceField(choices=sorted(values.TYPES))
    count = serializers.IntegerField(min_value=0, required=False)
    null_count = serializers.IntegerField(min_value=0)
    null_share = serializers.FloatField(min_value=0, max_value=1)
    distinct = serializers.IntegerField(min_value=0)
    min = ProfileValueField(required=False, allow_null=True)
    max = ProfileValueField(required=False, allow_null=True)
    hash = serializers.RegexField(r"^[0-9a-f]{16}\Z", help_text="Order-independent column hash, 16 hex digits.")
    sum = ProfileValueField(required=False, allow_null=True)
    mean = ProfileValueField(required=False, allow_null=True)
    min_length = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    max_length = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    unexpected_count = serializers.IntegerField(min_value=0, required=False)
    unexpected_sample = serializers.ListField(child=ProfileValueField(), required=False, max_length=5)
    duplicate_values = serializers.IntegerField(min_value=0, required=False)

    def validate(self, attrs):
        for name in ("sum", "mean"):
            value = attrs.get(name)
            if isinstance(value, str) and profiles.as_float(value) is None:
                raise serializers.ValidationError({name: "A number, or a decimal number as text."})
        if attrs.get("type") in profiles.NUMERIC and attrs.get("count", 1) and "sum" not in attrs:
            raise serializers.ValidationError({"sum": "Required for integer and number columns."})
        return attrs


class ColumnProfilesField(serializers.DictField):
    """Column name → profile (at most 500 columns, names of 1 to 63 characters)."""

    def __init__(self, **kwargs):
        super().__init__(child=ColumnProfileSerializer(), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            if len(data) > 500:
                raise serializers.ValidationError("At most 500 columns.")
            bad = [k for k in data if not isinstance(k, str) or not 0 < len(k) <= 63 or "\x00" in k]
            if bad:
                raise serializers.ValidationError(f"Column names are 1 to 63 characters: {str(bad[0])[:20]!r}.")
        return super().to_internal_value(data)


class DestinationMetricsSerializer(StrictSerializer):
    """Per destination, what the built-in executor measures (so baselines compare like with like)."""

    table = serializers.CharField(max_length=200, required=False)
    row_count = serializers.IntegerField(min_value=0)
    key = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    distinct_keys = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    duplicate_key_count = serializers.IntegerField(min_value=0, required=False)
    duplicate_keys_sample = serializers.ListField(child=serializers.JSONField(), required=False, max_length=10)
    keys_unique = serializers.BooleanField(required=False, allow_null=True)
    hash_total = serializers.RegexField(r"^[0-9a-f]{16}\Z", help_text="Order-independent hash total, 16 hex digits.")
    columns = ColumnProfilesField(required=False, help_text="Column profiles, by column name.")


class RunReportSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=[RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED])
    metrics = serializers.DictField(child=DestinationMetricsSerializer(), required=False, allow_null=True)
    log_excerpt = serializers.CharField(
        max_length=20000, required=False, default="", allow_blank=True, trim_whitespace=False
    )
    error = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
