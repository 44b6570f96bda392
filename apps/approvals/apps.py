"""The approvals app's configuration; ready() registers its hooks in runs (the direct-deploy guard,
the rollback hook)."""

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Promotions and approvals"

    def ready(self):
        from apps.runs import services as run_services

        from . import services

        # Direct deploys into an environment that approval rules cover are refused (runs asks us).
        if services.direct_deploy_guard not in run_services.direct_deploy_guards:
            run_services.direct_deploy_guards.append(services.direct_deploy_guard)
        # A rollback of a deployment a promotion made marks that promotion rolled back (runs calls us).
        if services.promotion_rolled_back not in run_services.rollback_hooks:
            run_services.rollback_hooks.append(services.promotion_rolled_back)
