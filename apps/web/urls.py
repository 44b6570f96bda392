"""The server-rendered screens: sign-in, approvals inbox and request detail, projects with their
environment matrix, pipeline pages
(with the run, schedule and preview dialogs), run pages and the audit feed."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "web"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="web/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("promotions/<int:pk>/", views.request_detail, name="request-detail"),
    path("promotions/<int:pk>/decide/", views.request_decide, name="request-decide"),
    path("promotions/<int:pk>/cancel/", views.request_cancel, name="request-cancel"),
    path("projects/", views.projects, name="projects"),
    path("projects/<int:pk>/matrix/", views.project_matrix, name="project-matrix"),
    path("pipelines/<int:pk>/", views.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<int:pk>/promote/", views.pipeline_promote, name="pipeline-promote"),
    path("pipelines/<int:pk>/run/", views.pipeline_run, name="pipeline-run"),
    path("pipelines/<int:pk>/schedules/", views.pipeline_schedule_create, name="pipeline-schedule-create"),
    path("pipelines/<int:pk>/preview/", views.pipeline_preview, name="pipeline-preview"),
    path("pipelines/<int:pk>/personal/", views.pipeline_personal_set, name="pipeline-personal"),
    path("pipelines/<int:pk>/personal/<int:row>/clear/", views.pipeline_personal_clear, name="pipeline-personal-clear"),
    path("pipelines/<int:pk>/triggers/", views.pipeline_trigger_create, name="pipeline-trigger-create"),
    path("triggers/<int:pk>/switch/", views.trigger_switch, name="trigger-switch"),
    path("triggers/<int:pk>/delete/", views.trigger_delete, name="trigger-delete"),
    path("schedules/preview/", views.schedule_preview, name="schedule-preview"),
    path("schedules/<int:pk>/", views.schedule_update, name="schedule-update"),
    path("schedules/<int:pk>/delete/", views.schedule_delete, name="schedule-delete"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/status/", views.run_status, name="run-status"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/rerun/", views.run_rerun, name="run-rerun"),
    path("audit/", views.audit, name="audit"),
    path("insights/", views.insights, name="insights"),
]
