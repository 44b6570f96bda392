"""The shared personas of tests/conftest.py are what its docstring says they are: every test file
leans on them, so a change to one of them fails here first, by name."""

from apps.environments import permissions as perms
from apps.tenancy.models import Edition, Membership, Role


def test_personas_build(members, stages):
    dev = members["developer"]
    assert perms.may(dev, perms.RUN, stages["development"])
    assert not perms.may(dev, perms.RUN, stages["production"])


def test_approvers_approve_on_their_own_stage_only(members, stages):
    stager, prodder = members["staging_approver"], members["prod_approver"]
    assert perms.may(stager, perms.APPROVE_PROMOTION, stages["staging"])
    assert not perms.may(stager, perms.APPROVE_PROMOTION, stages["production"])
    assert perms.may(prodder, perms.APPROVE_PROMOTION, stages["production"])
    assert not perms.may(prodder, perms.APPROVE_PROMOTION, stages["staging"])


def test_the_second_organization_is_apart_from_acme(org, stages, members, other_org, other_owner, outsider, superuser):
    assert (other_org.slug, other_org.edition) == ("globex", Edition.ENTERPRISE)
    assert Membership.objects.get(organization=other_org, user=other_owner).role == Role.OWNER
    assert not Membership.objects.filter(organization=org, user=other_owner).exists()
    assert not Membership.objects.filter(user=outsider).exists()
    assert other_owner.is_staff and not other_owner.is_superuser
    assert not perms.may(other_owner, perms.VIEW, stages["development"])
    assert superuser.is_superuser and perms.may(superuser, perms.VIEW, stages["production"])
