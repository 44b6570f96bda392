"""One answer to "may this person do this action on this object, and if not, why": the services
compute it (`promotion_actions`, `run_actions`, `deployment_actions`), enforce it by raising its
error, and every surface (API `actions`, screens' buttons, admin actions) renders the same answer."""

from dataclasses import dataclass

from drf_spectacular.utils import extend_schema_field

from .errors import DomainError


@dataclass(frozen=True)
class Answer:
    """One action's answer: allowed, or the reasons it is not and the error a service raises."""

    reasons: tuple[str, ...] = ()
    error: DomainError | None = None

    @property
    def allowed(self) -> bool:
        return self.error is None

    def enforce(self) -> None:
        """Raise the refusal (the service's 403/409), or do nothing when the action is allowed."""
        if self.error is not None:
            raise self.error

    def as_dict(self) -> dict:
        return {"allowed": self.allowed, "reasons": list(self.reasons)}


ALLOWED = Answer()


def refused(error: DomainError, *reasons: str) -> Answer:
    """A refusal: the reasons shown (default: the error's message) and the error the service raises."""
    return Answer(reasons=reasons or (error.message,), error=error)


def actions_schema(*names: str):
    """The OpenAPI shape of an `actions` object: one answer per action name."""
    return extend_schema_field(
        {
            "type": "object",
            "properties": {
                name: {
                    "type": "object",
                    "properties": {
                        "allowed": {"type": "boolean"},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["allowed", "reasons"],
                }
                for name in names
            },
            "required": list(names),
            "description": "Per action: whether you may do it now, and why not (what the screens' buttons show).",
        }
    )


def actions_field(names, answers_of):
    """A response's `actions`: `answers_of(user, obj)` rendered per action name, published as
    `actions_schema(*names)`."""
    from rest_framework import serializers

    @actions_schema(*names)
    class Actions(serializers.Field):
        def __init__(self):
            super().__init__(source="*", read_only=True)

        def to_representation(self, value) -> dict:
            answers = answers_of(self.context["request"].user, value)
            return {name: answer.as_dict() for name, answer in answers.items()}

    return Actions()
