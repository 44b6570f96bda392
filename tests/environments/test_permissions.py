"""The permission door: may(), require(), environments_where() and held_codenames()."""

import pytest
from guardian.shortcuts import assign_perm

from apps.core.errors import PermissionDenied
from apps.environments import permissions as perms
from apps.environments import services
from apps.environments.models import Environment

from .conftest import fresh

ALL = set(perms.CODENAMES)
WRITE_SCOPE = {
    perms.VIEW,
    perms.CHANGE_CONFIG,
    perms.REQUEST_PROMOTION,
    perms.APPROVE_PROMOTION,
    perms.MANAGE_SCHEDULES,
}
NOTHING = {"development": set(), "staging": set(), "production": set()}

# persona -> stage -> codenames it may use there (the §6 matrix for the conftest personas).
EXPECTED = {
    "org_admin": {"development": ALL, "staging": ALL, "production": ALL},
    "superuser": {"development": ALL, "staging": ALL, "production": ALL},
    "developer": {"development": set(perms.DEVELOPMENT_DEFAULTS), "staging": {perms.RUN}, "production": set()},
    "staging_approver": {
        "development": set(perms.DEVELOPMENT_DEFAULTS),
        "staging": {perms.VIEW, perms.APPROVE_PROMOTION},
        "production": set(),
    },
    "prod_approver": {
        "development": set(perms.DEVELOPMENT_DEFAULTS),
        "staging": set(),
        "production": {perms.VIEW, perms.APPROVE_PROMOTION},
    },
    "outsider": NOTHING,
    "platform_staff": NOTHING,
    "inactive_member": NOTHING,
    # The service account holds the development defaults; its key has only the `run` scope.
    "run_key": {"development": {perms.RUN, perms.USE_CREDENTIALS}, "staging": set(), "production": set()},
    # An owner's `write` key: everything the write scope covers, in every stage; not run, not manage.
    "admin_write_key": {"development": WRITE_SCOPE, "staging": WRITE_SCOPE, "production": WRITE_SCOPE},
    "developer_read_key": {"development": {perms.VIEW}, "staging": set(), "production": set()},
    "developer_foreign_key": NOTHING,
}


@pytest.mark.parametrize("persona", sorted(EXPECTED))
def test_may_follows_the_matrix(personas, stages, persona):
    user = personas[persona]
    for stage, environment in stages.items():
        for codename in perms.CODENAMES:
            assert perms.may(user, codename, environment) is (codename in EXPECTED[persona][stage]), (stage, codename)


@pytest.mark.parametrize("codename", perms.CODENAMES)
@pytest.mark.parametrize("persona", sorted(EXPECTED))
def test_environments_where_agrees_with_may(personas, stages, other_env, persona, codename):
    user = personas[persona]
    everything = [*stages.values(), other_env]
    listed = set(perms.environments_where(user, codename, Environment.objects.all()))
    allowed = {environment for environment in everything if perms.may(user, codename, environment)}
    assert listed == allowed


def test_held_codenames_lists_what_may_allows(personas, stages):
    assert set(perms.held_codenames(personas["developer"], stages["development"])) == set(perms.DEVELOPMENT_DEFAULTS)
    assert perms.held_codenames(personas["outsider"], stages["development"]) == []


def test_require_names_the_permission_and_environment(personas, stages):
    with pytest.raises(PermissionDenied) as excinfo:
        perms.require(personas["developer"], perms.MANAGE, stages["production"])
    assert "manage_environment" in excinfo.value.message
    assert "production" in excinfo.value.message


def test_unknown_codename_is_a_programming_error(personas, stages):
    with pytest.raises(ValueError):
        perms.may(personas["org_admin"], "fly", stages["development"])
    with pytest.raises(ValueError):
        perms.environments_where(personas["org_admin"], "fly")


def test_manage_implies_every_other_codename(org_admin, stages, members):
    developer = members["developer"]
    services.permission_grant(actor=org_admin, environment=stages["production"], codename=perms.MANAGE, user=developer)
    developer = fresh(developer)
    assert set(perms.held_codenames(developer, stages["production"])) == ALL
    assert stages["production"] in perms.environments_where(developer, perms.APPROVE_PROMOTION)


def test_group_grant_reaches_group_members_only(personas, stages, deployers):
    assert perms.may(personas["developer"], perms.RUN, stages["staging"])
    assert not perms.may(personas["staging_approver"], perms.RUN, stages["staging"])


def test_grants_of_non_members_count_for_nothing(outsider, stages):
    # A stale row (e.g. left by a direct write) must not let a non-member in.
    assign_perm(perms.VIEW, outsider, stages["staging"])
    outsider = fresh(outsider)
    assert not perms.may(outsider, perms.VIEW, stages["staging"])
    assert not perms.environments_where(outsider, perms.VIEW).exists()


def test_global_permissions_are_never_consulted(developer, members, stages):
    from django.contrib.auth.models import Permission

    developer.user_permissions.add(Permission.objects.get(codename=perms.MANAGE))
    developer = fresh(developer)
    assert developer.has_perm(f"environments.{perms.MANAGE}")
    assert not perms.may(developer, perms.MANAGE, stages["production"])
    assert stages["production"] not in perms.environments_where(developer, perms.VIEW)


def test_inactive_org_admin_may_nothing(org_admin, stages):
    org_admin.is_active = False
    org_admin.save()
    org_admin = fresh(org_admin)
    assert not perms.may(org_admin, perms.VIEW, stages["development"])
    assert not perms.environments_where(org_admin, perms.VIEW).exists()


def test_anonymous_may_nothing(stages):
    from django.contrib.auth.models import AnonymousUser

    assert not perms.may(AnonymousUser(), perms.VIEW, stages["development"])
    assert not perms.may(None, perms.VIEW, stages["development"])
    assert not perms.environments_where(AnonymousUser(), perms.VIEW).exists()


def test_revoking_takes_effect_after_forget(org_admin, stages, members):
    approver = fresh(members["staging_approver"])
    assert perms.may(approver, perms.APPROVE_PROMOTION, stages["staging"])
    services.permission_revoke(
        actor=org_admin, environment=stages["staging"], codename=perms.APPROVE_PROMOTION, user=approver
    )
    assert not perms.may(approver, perms.APPROVE_PROMOTION, stages["staging"])
    assert perms.may(approver, perms.VIEW, stages["staging"])
