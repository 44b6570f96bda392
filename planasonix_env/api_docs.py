"""The API's documentation tags: one per resource, in the order the docs list them."""

API_TAGS = [
    {"name": "organizations", "description": "Tenants: edition, limits and the environment naming rule."},
    {"name": "memberships", "description": "Who belongs to an organization, with which role."},
    {"name": "service-accounts", "description": "Non-human members that own API keys for integrations."},
    {"name": "api-keys", "description": "Scoped API keys (`read`, `run`, `write`, `admin`); the token is shown once."},
    {
        "name": "environments",
        "description": "Stages, the promotion path, runtime policies, freeze windows, permissions.",
    },
    {"name": "secrets", "description": "Credential references; values are write-only."},
    {"name": "projects", "description": "Projects (with their default environment) and the environment matrix."},
    {"name": "pipelines", "description": "Pipelines, immutable versions, resolution, diff and readiness."},
    {
        "name": "repositories",
        "description": "Git repositories that pipeline versions come from: sync, provider webhooks.",
    },
    {"name": "variables", "description": "Variable definitions at organization, project or pipeline scope."},
    {"name": "variable-overrides", "description": "A variable's value in one environment."},
    {
        "name": "personal-overrides",
        "description": "Your own value for a variable in a development environment: only your runs, previews "
        "and resolves use it (provenance `personal`).",
    },
    {"name": "connection-roles", "description": "Logical connection roles such as `analytics_warehouse`."},
    {"name": "connection-bindings", "description": "A role bound to a physical endpoint in one environment."},
    {"name": "runs", "description": "Runs: create, preview, claim and report (external executors), cancel."},
    {"name": "deployments", "description": "Which version runs where; rollback."},
    {"name": "schedules", "description": "Cron schedules per pipeline and environment."},
    {
        "name": "triggers",
        "description": "Downstream orchestration: on success of another pipeline, or on a signed inbound webhook.",
    },
    {"name": "approval-rules", "description": "What a promotion into an environment needs."},
    {"name": "promotions", "description": "Promotion requests, their frozen plan and decisions."},
    {"name": "notification-channels", "description": "Email, webhook and Slack-style channels."},
    {"name": "notifications", "description": "The caller's in-app inbox."},
    {"name": "audit", "description": "Who changed what, when, in which environment; CSV and JSON Lines export."},
    {"name": "insights", "description": "Delivery metrics per pipeline and environment (DORA)."},
]
