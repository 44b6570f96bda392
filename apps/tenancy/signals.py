"""Hooks for apps above tenancy (tenancy knows nothing of environments).

Signals are sent inside the service's transaction, so a receiver that raises rolls the whole
change back."""

from django.dispatch import Signal

# sender=Organization, organization=, actor=
organization_created = Signal()
# sender=Organization, organization=, changes= (dict of field -> new value), actor=
# Receivers raise a DomainError to refuse the change (e.g. a downgrade that would orphan stages).
organization_changing = Signal()
# sender=Membership, membership=, actor=
member_added = Signal()
# sender=Membership, membership=, actor=  (sent before the row is deleted)
member_removed = Signal()
