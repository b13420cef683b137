from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SCHEDULED = "scheduled", _("Scheduled")
    STARTED = "started", _("Started")
    RETRYING = "retrying", _("Retrying")
    FINISHED = "finished", _("Finished")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    #: Waiting for other jobs to end (``depends_on``): kept in the database only, pushed when released.
    DEFERRED = "deferred", _("Deferred")


#: States in which a job may still be picked up by a worker.
WAITING = (Status.QUEUED, Status.SCHEDULED, Status.RETRYING)
#: States a person may cancel: the waiting ones, and jobs waiting for their dependencies.
CANCELLABLE = (*WAITING, Status.DEFERRED)
#: States that hold a unique key.
ACTIVE = (*WAITING, Status.STARTED, Status.DEFERRED)
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

    def deferred(self) -> JobQuerySet:
        """Jobs waiting for their dependencies to end."""
        return self.filter(status=Status.DEFERRED)

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
    #: Among the waiting jobs of its queue, a job of higher priority starts first (-100 to 100).
    priority = models.SmallIntegerField(_("priority"), default=0)
    #: Pushed ahead of the waiting jobs of its priority, whenever it is pushed (``at_front``).
    at_front = models.BooleanField(_("at front"), default=False)
    #: The backoff between attempts the job was enqueued with: ``"exponential"``, ``"fixed"`` or a list
    #: of seconds, and the seconds of its first step (None: ``JOBS["BACKOFF_BASE"]``). A record written
    #: before these were kept has no backoff: its job function's holds.
    backoff = models.JSONField(_("backoff"), null=True, blank=True)
    backoff_base = models.PositiveIntegerField(_("backoff base (s)"), null=True, blank=True)

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
    schedule = models.ForeignKey(
        "Schedule",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    #: The tick of ``schedule`` this job is the run of; empty for a run asked for by a person.
    tick = models.DateTimeField(_("tick"), null=True, blank=True)
    # Workflows (``depends_on``): how many jobs this one waits for, how many of those have not ended yet,
    # whether other jobs wait for this one, and when its last dependency ended.
    dependencies_total = models.PositiveIntegerField(_("dependencies"), default=0)
    dependencies_pending = models.PositiveIntegerField(_("dependencies pending"), default=0)
    has_dependents = models.BooleanField(_("has dependents"), default=False)
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)

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
            # Partial, as the constraint below: the jobs no schedule runs do not pay for them.
            models.Index(
                fields=["schedule", "-enqueued_at"],
                name="jobs_schedule_runs_idx",
                condition=Q(schedule__isnull=False),
            ),
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
            # Exactly one job per tick of a schedule, however many workers fire it at once.
            models.UniqueConstraint(
                fields=["schedule", "tick"],
                condition=Q(schedule__isnull=False) & Q(tick__isnull=False),
                name="jobs_one_run_per_tick",
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
    def waiting_for(self) -> str:
        """ "waiting for 3 of 100" while the job waits for its dependencies; empty otherwise."""
        if self.status != Status.DEFERRED:
            return ""
        return gettext("waiting for %(pending)d of %(total)d") % {
            "pending": self.dependencies_pending,
            "total": self.dependencies_total,
        }

    def dependencies(self) -> JobQuerySet:
        """The jobs this one waits for (or waited for), in the order ``depends_on`` gave them."""
        return (
            Job.objects.using(self._state.db)
            .filter(dependent_links__dependent=self)
            .order_by("dependent_links__position")
        )

    def dependents(self) -> JobQuerySet:
        """The jobs that wait (or waited) for this one."""
        return Job.objects.using(self._state.db).filter(dependency_links__dependency=self)

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


class Source(models.TextChoices):
    CODE = "code", _("code")
    SETTINGS = "settings", _("settings")
    ADMIN = "admin", _("admin")


class ScheduleQuerySet(models.QuerySet):
    def enabled(self) -> ScheduleQuerySet:
        return self.filter(enabled=True)

    def due(self, now: datetime) -> ScheduleQuerySet:
        """Enabled schedules whose next tick has come."""
        return self.enabled().filter(next_tick__lte=now)

    def declared(self) -> ScheduleQuerySet:
        """Schedules that code or settings declare, which a sync rewrites."""
        return self.exclude(source=Source.ADMIN)


class Schedule(models.Model):
    """A recurring job: a registered function run with these arguments at each tick of a cron expression
    (in a time zone) or of an interval. Each run is an ordinary Job with ``schedule`` and ``tick`` set."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    function = models.CharField(_("function"), max_length=255)
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    cron = models.CharField(
        _("cron expression"), max_length=100, blank=True, help_text=_("For example 0 9 * * 1-5.")
    )
    every = models.DurationField(
        _("interval"), null=True, blank=True, help_text=_("Instead of a cron expression: hh:mm:ss.")
    )
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("The zone the cron expression is read in; empty for settings.TIME_ZONE."),
    )
    catch_up = models.BooleanField(
        _("catch up"),
        default=True,
        help_text=_("Run missed ticks once when workers are back (otherwise they are skipped)."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    source = models.CharField(
        _("declared in"), max_length=16, choices=Source.choices, default=Source.ADMIN, editable=False
    )
    next_tick = models.DateTimeField(_("next tick"), null=True, blank=True, editable=False)
    last_tick = models.DateTimeField(_("last tick"), null=True, blank=True, editable=False)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["name"]
        indexes = [models.Index(fields=["enabled", "next_tick"], name="jobs_schedule_due_idx")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cron="") & Q(every__isnull=False)) | (~Q(cron="") & Q(every__isnull=True)),
                name="jobs_schedule_cron_or_every",
            ),
        ]
        permissions = [
            ("enable_schedule", _("Can enable and disable a schedule")),
            ("run_schedule", _("Can run a schedule now")),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.next_tick is None:
            self.next_tick = self.first_tick_after(timezone.now())
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "next_tick"}
        super().save(*args, **kwargs)

    @property
    def cadence(self) -> str:
        """The cron expression with its zone, or the interval, as a person reads it."""
        if self.every is not None:
            return f"every {self.every}"
        return f"{self.cron} ({self.timezone or settings.TIME_ZONE})"

    def job_function(self, known: bool = False) -> Any:
        """The registered job this schedule runs, once its definition is checked (``InvalidSchedule``
        otherwise; see ``jobs.declarations.check_definition``)."""
        from .declarations import check_definition

        return check_definition(
            function=self.function,
            cron=self.cron,
            every=self.every,
            timezone=self.timezone,
            args=self.args,
            kwargs=self.kwargs,
            known=known,
        )

    def clean(self) -> None:
        from .exceptions import InvalidSchedule

        try:
            self.job_function()
        except InvalidSchedule as exc:
            raise ValidationError({exc.field: str(exc)} if exc.field else str(exc)) from exc

    def first_tick_after(self, moment: datetime) -> datetime | None:
        """The schedule's first tick after ``moment`` (and after its last tick); None when it has ended
        (a cron expression whose year field has passed): it is then never due again."""
        from .ticks import tick_after

        after = max(moment, self.last_tick) if self.last_tick else moment
        return tick_after(after=after, cron=self.cron, every=self.every, zone_name=self.timezone)


class Dependency(models.Model):
    """One edge of a workflow: ``dependent`` runs only after ``dependency`` has ended.

    ``done`` is set once the dependency has finished (or has ended otherwise, when it is allowed to fail),
    in the transaction of that end, together with the decrement of the dependent's
    ``dependencies_pending``: the count always equals its edges not done.
    """

    dependent = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependency_links")
    dependency = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependent_links")
    #: Where the dependency stands in the ``depends_on`` it was given in (the order of its results).
    position = models.PositiveIntegerField(_("position"), default=0)
    allow_failure = models.BooleanField(_("allowed to fail"), default=False)
    done = models.BooleanField(_("done"), default=False)

    class Meta:
        verbose_name = _("dependency")
        verbose_name_plural = _("dependencies")
        ordering = ["dependent", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dependent", "dependency"], name="jobs_dependency_unique"),
        ]
        indexes = [
            models.Index(fields=["dependency"], name="jobs_dependency_open_idx", condition=Q(done=False)),
        ]

    def __str__(self) -> str:
        return f"{self.dependent_id} after {self.dependency_id}"


class Dashboard(Job):
    """Gives the admin dashboard of queues and workers its entry on the admin index; it holds no data."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ()
