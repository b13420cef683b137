from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = _("Background jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401 - registers the checks; signals are sent elsewhere

        # Schedules declared in code and settings reach the table on `migrate` (as contrib.auth's
        # permissions do); nothing runs now.
        post_migrate.connect(_sync_schedules, sender=self, dispatch_uid="jobs.sync_schedules")


def _sync_schedules(**kwargs: Any) -> None:
    from .schedules import sync_after_migrate

    sync_after_migrate(**kwargs)
