"""The promotion state machine: every action (apps/approvals/services/actions.py) is refused from a
state it does not start from and leads where the transition declares; the state changes only through
the transitions (apps/approvals/services/base.py)."""

import pytest

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.core.errors import Conflict
from apps.runs.models import Deployment

from .service_helpers import (
    request,
)

pytestmark = pytest.mark.django_db

S = PromotionState


# --- the state machine ----------------------------------------------------------------------------------------


def _attempt(p, action, promotion):
    if action == "approve":
        return services.promotion_approve(actor=p["staging_approver"], request=promotion)
    if action == "reject":
        return services.promotion_reject(actor=p["staging_approver"], request=promotion, comment="no")
    if action == "cancel":
        return services.promotion_cancel(actor=p["developer"], request=promotion)
    if action == "retry":
        return services.promotion_retry(actor=p["developer"], request=promotion)
    assert action == "override_freeze"
    return services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="outage")


def declared(name):
    """(source states, target) of one of PromotionRequest's transition methods, as django-fsm declares it."""
    transitions = list(PromotionRequest._meta.get_field("state").get_all_transitions(PromotionRequest))
    chosen = [t for t in transitions if t.name == name]
    assert chosen, name
    return [t.source for t in chosen], chosen[0].target


@pytest.mark.parametrize("action", services.PROMOTION_ACTIONS)
def test_every_action_is_refused_from_every_state_it_does_not_start_from(promo, action):
    p = promo
    promotion = request(p)
    allowed, _ = declared(action)
    refused = [state for state in S if state not in allowed]
    assert refused
    for state in refused:
        PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
        promotion.refresh_from_db()
        answer = services.promotion_actions(p["org_admin"], promotion)[action]
        assert not answer.allowed and answer.reasons == (f"the request is {state.value}",)
        with pytest.raises(Conflict) as err:
            _attempt(p, action, promotion)
        assert err.value.status == 409 and err.value.code == "invalid_state"
        assert f"it is {state.value}" in err.value.message, err.value.message
        assert action.replace("_", " ") in err.value.message
        assert PromotionRequest.objects.get(pk=promotion.pk).state == state
    assert not ApprovalDecision.objects.exists()


@pytest.mark.parametrize("action", services.PROMOTION_ACTIONS)
def test_allowed_transitions_lead_where_they_are_declared(promo, action):
    p = promo
    promotion = request(p)
    allowed, leads_to = declared(action)
    PromotionRequest.objects.filter(pk=promotion.pk).update(state=allowed[-1])
    promotion.refresh_from_db()
    result = _attempt(p, action, promotion)
    assert result.state == (leads_to or allowed[-1])
    assert PromotionRequest.objects.get(pk=promotion.pk).state == result.state


@pytest.mark.parametrize(
    "name", sorted({t.name for t in PromotionRequest._meta.get_field("state").get_all_transitions(PromotionRequest)})
)
def test_worker_side_transitions_refuse_undeclared_states_with_a_409(promo, name):
    p = promo
    promotion = request(p)
    allowed, _ = declared(name)
    for state in [state for state in S if state not in allowed]:
        PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
        promotion.refresh_from_db()
        with pytest.raises(Conflict) as err:
            services.transition(promotion, name)
        assert err.value.code == "invalid_state" and f"it is {state.value}" in err.value.message


def test_the_state_is_assigned_only_through_transitions(promo):
    promotion = request(promo)
    with pytest.raises(AttributeError):
        promotion.state = S.DEPLOYED
    promotion.refresh_from_db()  # FSMModelMixin: reading the row again still works
    assert promotion.state == S.PENDING


@pytest.mark.parametrize("state", [S.PENDING, S.DEPLOYED, S.ROLLED_BACK, S.REJECTED, S.CANCELLED, S.EXPIRED, S.FAILED])
def test_the_worker_deploys_only_approved_requests(promo, state):
    p = promo
    promotion = request(p)
    PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
    assert services.promotion_execute(promotion.pk) is None
    promotion.refresh_from_db()
    assert promotion.state == state
    assert not Deployment.objects.filter(environment=p["staging"]).exists()
