"""The Schedule admin: every recurring job with its next tick and its last run, enabled, disabled or run now.

Schedules added here are edited here; those that code or settings declare are read-only but for being
enabled, which a sync keeps. Enabling, disabling and running one now are actions, each with its own
permission, on POST with CSRF, written to the admin's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import registry, schedules
from ..exceptions import JobsError
from ..models import Job, Schedule, Source, Status
from .display import status_badge
from .job_admin import _user_id

#: What a declared schedule's page shows read-only: code or settings own it.
DECLARED_READONLY = ("name", "function", "cron", "every", "timezone", "args", "kwargs", "catch_up")


class ScheduleForm(forms.ModelForm):
    function = forms.ChoiceField(label=_("function"), choices=())

    class Meta:
        model = Schedule
        fields = ("name", "function", "cron", "every", "timezone", "args", "kwargs", "catch_up", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "function" not in self.fields:  # read-only: a declared schedule's
            return
        names = registry.names()
        current = self.initial.get("function")
        if current and current not in names:
            names.append(current)
        cast("forms.ChoiceField", self.fields["function"]).choices = [
            ("", "---------"),
            *((name, name) for name in names),
        ]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = (
        "name",
        "function",
        "cadence",
        "enabled",
        "next_tick_text",
        "last_run",
        "last_outcome",
        "source",
    )
    list_filter = ("enabled", "source")
    search_fields = ("name", "function")
    actions = ["enable_selected", "disable_selected", "run_selected"]
    fields = (
        "name",
        "function",
        "cron",
        "every",
        "timezone",
        "args",
        "kwargs",
        "catch_up",
        "enabled",
        "source",
        "next_tick_text",
        "last_tick_text",
        "runs",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        last = Job.objects.filter(schedule=OuterRef("pk")).order_by("-enqueued_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_run_id=Subquery(last.values("id")[:1]),
                last_run_at=Subquery(last.values("enqueued_at")[:1]),
                last_run_status=Subquery(last.values("status")[:1]),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly: tuple[str, ...] = ("source", "next_tick_text", "last_tick_text", "runs")
        if obj is not None and obj.source != Source.ADMIN:
            readonly += DECLARED_READONLY
        if not self.has_enable_permission(request):
            readonly += ("enabled",)
        return readonly

    # Columns -------------------------------------------------------------------------------------

    @admin.display(description=_("next tick"), ordering="next_tick")
    def next_tick_text(self, schedule: Schedule) -> str:
        return _moment(schedule.next_tick) if schedule.enabled else "-"

    @admin.display(description=_("last tick"), ordering="last_tick")
    def last_tick_text(self, schedule: Schedule) -> str:
        return _moment(schedule.last_tick)

    @admin.display(description=_("last run"), ordering="last_run_at")
    def last_run(self, schedule: Schedule) -> str:
        at = getattr(schedule, "last_run_at", None)
        if at is None:
            return "-"
        url = reverse("admin:jobs_job_change", args=[schedule.last_run_id])  # type: ignore[attr-defined]
        return format_html('<a href="{}">{}</a>', url, _moment(at))

    @admin.display(description=_("outcome"))
    def last_outcome(self, schedule: Schedule) -> str:
        status = getattr(schedule, "last_run_status", None)
        if status is None:
            return "-"
        return status_badge(status, str(Status(status).label))

    @admin.display(description=_("runs"))
    def runs(self, schedule: Schedule) -> str:
        if schedule.pk is None:
            return "-"
        url = reverse("admin:jobs_job_changelist") + f"?schedule__id__exact={schedule.pk}"
        return format_html('<a href="{}">{}</a>', url, gettext("Every run of this schedule"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A declared schedule would come back at the next sync: it is disabled instead.
        if obj is not None and obj.source != Source.ADMIN:
            return False
        return super().has_delete_permission(request, obj)

    # Saving --------------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.ModelForm, change: bool) -> None:
        timing = {"cron", "every", "timezone", "enabled"}
        if not change or timing & set(form.changed_data):
            # From now on: ticks passed while it was disabled or differently timed are not caught up.
            obj.next_tick = obj.first_tick_after(timezone.now())
        super().save_model(request, obj, form, change)

    # Actions -------------------------------------------------------------------------------------

    def has_enable_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.enable_schedule")

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.run_schedule")

    @admin.action(description=_("Enable the selected schedules"), permissions=["enable"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        now = timezone.now()
        changed = []
        for schedule in queryset.filter(enabled=False):
            schedule.enabled = True
            schedule.next_tick = schedule.first_tick_after(now)
            schedule.save(update_fields=["enabled", "next_tick"])
            changed.append(schedule)
        self._log(request, changed, gettext("Enabled."))
        self._report(
            request,
            ngettext("Enabled %(count)d schedule.", "Enabled %(count)d schedules.", len(changed)),
            len(changed),
        )

    @admin.action(description=_("Disable the selected schedules"), permissions=["enable"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        changed = list(queryset.filter(enabled=True))
        Schedule.objects.filter(pk__in=[s.pk for s in changed]).update(enabled=False)
        self._log(request, changed, gettext("Disabled."))
        self._report(
            request,
            ngettext("Disabled %(count)d schedule.", "Disabled %(count)d schedules.", len(changed)),
            len(changed),
        )

    @admin.action(description=_("Run the selected schedules now"), permissions=["run"])
    def run_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        ran = []
        for schedule in queryset:
            try:
                record = schedules.run_now(schedule)
            except JobsError as exc:
                self.message_user(request, f"{schedule.name}: {exc}", messages.WARNING)
                continue
            ran.append(schedule)
            self._log(request, [schedule], gettext("Ran now: job %(id)s.") % {"id": record.pk})
        self._report(
            request, ngettext("Started %(count)d run.", "Started %(count)d runs.", len(ran)), len(ran)
        )

    def _report(self, request: HttpRequest, message: str, count: int) -> None:
        if count:
            self.message_user(request, message % {"count": count}, messages.SUCCESS)

    def _log(self, request: HttpRequest, records: list[Schedule], message: str) -> None:
        if records:
            LogEntry.objects.log_actions(
                user_id=_user_id(request), queryset=records, action_flag=CHANGE, change_message=message
            )


def _moment(at: datetime | None) -> str:
    """A tick to the second, in the current time zone."""
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z") if at is not None else "-"
