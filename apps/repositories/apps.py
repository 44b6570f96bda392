"""The repositories app's configuration (Git remotes as the source of versions)."""

from django.apps import AppConfig


class RepositoriesConfig(AppConfig):
    name = "apps.repositories"
    label = "repositories"
    verbose_name = "Git repositories"
