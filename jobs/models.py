from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SCHEDULED = "scheduled", _("Scheduled")
    STARTED = "started", _("Started")
    RETRYING = "retrying", _("Retrying")
    FINISHED = "finished", _("Finished")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


#: States in which a job may still be picked up by a worker.
WAITING = (Status.QUEUED, Status.SCHEDULED, Status.RETRYING)
#: States that hold a unique key.
ACTIVE = (*WAITING, Status.STARTED)
FINAL = (Status.FINISHED, Status.FAILED, Status.CANCELLED)


class JobQuerySet(models.QuerySet):
    def waiting(self) -> JobQuerySet:
        return self.filter(status__in=WAITING)

    def active(self) -> JobQuerySet:
        return self.filter(status__in=ACTIVE)

    def started(self) -> JobQuerySet:
        return self.filter(status=Status.STARTED)

    def finished(self) -> JobQuerySet:
        return self.filter(status=Status.FINISHED)

    def failed(self) -> JobQuerySet:
        return self.filter(status=Status.FAILED)

    def undispatched(self) -> JobQuerySet:
        """Waiting jobs whose push to Redis failed at commit time."""
        return self.waiting().filter(undispatched_since__isnull=False)


class Job(models.Model):
    """The durable record of one job, from enqueue until retention removes it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    function = models.CharField(_("function"), max_length=255)
    queue = models.CharField(_("queue"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    unique_key = models.CharField(_("unique key"), max_length=255, null=True, blank=True)  # noqa: DJ001

    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    max_attempts = models.PositiveIntegerField(_("max attempts"), default=1)
    timeout = models.PositiveIntegerField(_("timeout (s)"), null=True, blank=True)

    progress = models.FloatField(_("progress (%)"), default=0)
    progress_message = models.CharField(_("progress message"), max_length=255, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    error_class = models.CharField(_("error class"), max_length=255, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    worker_name = models.CharField(_("worker"), max_length=255, blank=True)

    enqueued_at = models.DateTimeField(_("enqueued at"), default=timezone.now)
    scheduled_for = models.DateTimeField(_("scheduled for"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    undispatched_since = models.DateTimeField(_("undispatched since"), null=True, blank=True)
    retried_at = models.DateTimeField(_("retried at"), null=True, blank=True)
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("retried by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-enqueued_at"]
        indexes = [
            models.Index(fields=["-enqueued_at"], name="jobs_enqueued_idx"),
            models.Index(fields=["status", "-enqueued_at"], name="jobs_status_idx"),
            models.Index(fields=["queue", "status"], name="jobs_queue_status_idx"),
            models.Index(fields=["function", "-enqueued_at"], name="jobs_function_idx"),
            models.Index(fields=["finished_at"], name="jobs_finished_idx"),
            models.Index(
                fields=["undispatched_since"],
                name="jobs_undispatched_idx",
                condition=Q(undispatched_since__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(unique_key__isnull=False) & Q(status__in=ACTIVE),
                name="jobs_unique_active_key",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100), name="jobs_progress_range"
            ),
        ]
        permissions = [
            ("retry_job", _("Can retry a failed job")),
            ("cancel_job", _("Can cancel a waiting job")),
            ("pause_queue", _("Can pause and resume a queue")),
        ]

    def __str__(self) -> str:
        return f"{self.function} ({self.id})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def is_dispatched(self) -> bool:
        return self.undispatched_since is None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def add_failed_attempt(
        self,
        *,
        number: int,
        failed_at: datetime,
        error_class: str,
        error_message: str,
        traceback: str = "",
    ) -> FailedAttempt:
        """Keep attempt ``number``'s failure in the history; the record's own fields hold the last one.

        Written by ``jobs.transitions`` once the attempt's failure has won its transition.
        """
        return FailedAttempt.objects.using(self._state.db or router.db_for_write(FailedAttempt)).create(
            job=self,
            number=number,
            worker_name=self.worker_name,
            started_at=self.started_at,
            failed_at=failed_at,
            error_class=error_class,
            error_message=error_message,
            traceback=traceback,
        )


class FailedAttempt(models.Model):
    """One failed run of a job, kept so the history shows every error, not only the last."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="failed_attempts")
    number = models.PositiveIntegerField(_("attempt"))
    worker_name = models.CharField(_("worker"), max_length=255, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), default=timezone.now)
    error_class = models.CharField(_("error class"), max_length=255, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)

    class Meta:
        verbose_name = _("failed attempt")
        verbose_name_plural = _("failed attempts")
        ordering = ["job", "number"]
        indexes = [models.Index(fields=["failed_at"], name="jobs_attempt_failed_idx")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.number}: {self.error_class}"


class Dashboard(Job):
    """Gives the admin dashboard of queues and workers its entry on the admin index; it holds no data."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ()
