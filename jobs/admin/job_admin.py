"""The Job admin: triage failed jobs, retry one or many, cancel waiting ones, and the dashboard.

Records are read-only here: actions (retry, cancel, delete) are the only way to change a job, each needs
its own permission, runs on POST with CSRF, and is written to the admin's history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import smart_split
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import pause
from ..models import CANCELLABLE, Dashboard, Dependency, FailedAttempt, Job, Status
from . import dashboard_views, operations
from .display import (
    call_text,
    duration_text,
    job_links,
    pretty_json,
    progress_bar,
    status_badge,
    traceback_block,
    waiting_note,
)

#: Records "retry all matching" reads, locks and retries at a time.
RETRY_BATCH = 500
#: Dependencies and dependents listed on a job's page; the rest are a link to the filtered list away.
LINKS_SHOWN = 50
#: The change list's filters by workflow link: the jobs a job waits for, and the jobs waiting for it.
DEPENDENCIES_OF = "dependent_links__dependent"
DEPENDENTS_OF = "dependency_links__dependency"


def _user_id(request: HttpRequest) -> Any:
    """The acting user's primary key (of whatever type): admin views only run for a logged-in user."""
    user_id = request.user.pk
    assert user_id is not None
    return user_id


class FunctionFilter(admin.SimpleListFilter):
    """The job functions that have records (one indexed DISTINCT query)."""

    title = _("function")
    parameter_name = "function"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = Job.objects.order_by("function").values_list("function", flat=True).distinct()
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(function=self.value()) if self.value() else queryset


#: A search reads this many words at most: each is one more condition on every searched column.
MAX_SEARCH_WORDS = 20


class JobChangeList(ChangeList):
    """Django's change list, refusing a NUL character in a filter or the search as an invalid lookup (as
    an unknown field is): PostgreSQL cannot compare text with one, and the query would fail."""

    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> QuerySet[Job]:
        if any("\x00" in value for _name, values in request.GET.lists() for value in values):
            raise IncorrectLookupParameters(gettext("A filter or the search holds a NUL character."))
        return super().get_queryset(request, *args, **kwargs)


class FailedAttemptInline(admin.StackedInline):
    """Every failed run of the job, oldest first, with its escaped traceback."""

    model = FailedAttempt
    extra = 0
    can_delete = False
    fields = ("number", "worker_name", "started_at", "failed_at", "error_class", "error_message", "trace")
    readonly_fields = fields

    @admin.display(description=_("traceback"))
    def trace(self, attempt: FailedAttempt) -> str:
        return traceback_block(attempt.traceback)

    # Attempts are part of the job: whoever may see the job sees them, nobody edits them.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("jobs.view_job")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "function",
        "queue",
        "status_colour",
        "attempts_text",
        "progress_bar",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration_text",
    )
    list_display_links = ("function",)
    list_filter = ("status", "queue", FunctionFilter, "enqueued_at", "finished_at")
    search_fields = ("=id", "function", "args", "kwargs", "error_class", "error_message")
    search_help_text = _("Job id, function, arguments or error text.")
    ordering = ("-enqueued_at",)
    list_per_page = 50
    # The unfiltered total would cost a second COUNT over every row; the filtered count is enough.
    show_full_result_count = False
    actions = ["retry_selected", "cancel_selected", "delete_selected"]
    inlines = [FailedAttemptInline]
    change_form_template = "jobs/admin/job_change_form.html"
    change_list_template = "jobs/admin/job_change_list.html"
    fieldsets = (
        (None, {"fields": ("id", "function", "queue", "status_colour", "attempts_text", "unique_key")}),
        (_("Arguments"), {"fields": ("args_json", "kwargs_json")}),
        (_("Progress and result"), {"fields": ("progress_bar", "progress_message", "result_json")}),
        (_("Last error"), {"fields": ("error_class", "error_message", "traceback_html")}),
        (_("Workflow"), {"fields": ("dependencies_html", "dependents_html", "released_at")}),
        (
            _("Run"),
            {
                "fields": (
                    "worker_name",
                    "timeout",
                    "priority",
                    "enqueued_at",
                    "scheduled_for",
                    "started_at",
                    "finished_at",
                    "duration_text",
                    "undispatched_since",
                    "retried_at",
                    "retried_by",
                    "schedule",
                    "tick",
                )
            },
        ),
    )
    readonly_fields = tuple(
        name for _title, options in fieldsets for name in cast("tuple[str, ...]", options["fields"])
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Job], search_term: str) -> Any:
        words = list(smart_split(search_term))
        if len(words) > MAX_SEARCH_WORDS:
            search_term = " ".join(words[:MAX_SEARCH_WORDS])
            if not getattr(request, "_jobs_search_cut", False):
                request._jobs_search_cut = True  # type: ignore[attr-defined]
                message = gettext("The search has %(count)d words: only its first %(max)d were searched.")
                self.message_user(
                    request, message % {"count": len(words), "max": MAX_SEARCH_WORDS}, messages.WARNING
                )
        return super().get_search_results(request, queryset, search_term)

    # Columns and fields -------------------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_colour(self, job: Job) -> str:
        return waiting_note(status_badge(job.status, job.get_status_display()), job.waiting_for)

    @admin.display(description=_("runs after"))
    def dependencies_html(self, job: Job) -> str:
        links = Dependency.objects.filter(dependent=job).select_related("dependency")[:LINKS_SHOWN]
        notes = {True: gettext("allowed to fail"), False: ""}
        return self._links(
            [(link.dependency, notes[link.allow_failure]) for link in links],
            job.dependencies_total,
            f"{DEPENDENCIES_OF}={job.pk}",
        )

    @admin.display(description=_("runs before"))
    def dependents_html(self, job: Job) -> str:
        links = Dependency.objects.filter(dependency=job).select_related("dependent").order_by("pk")
        total = links.count() if job.has_dependents else 0
        return self._links(
            [(link.dependent, link.dependent.waiting_for) for link in links[:LINKS_SHOWN]],
            total,
            f"{DEPENDENTS_OF}={job.pk}",
        )

    def _links(self, jobs: list[tuple[Job, str]], total: int, filters: str) -> str:
        def url(record: Job) -> str:
            return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[record.pk])

        rows = [(url(r), call_text(r), r.status, r.get_status_display(), note) for r, note in jobs]
        return job_links(rows, total - len(rows), self._changelist_url(filters))

    @admin.display(description=_("attempts"), ordering="attempts")
    def attempts_text(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, job: Job) -> str:
        return progress_bar(job.progress)

    @admin.display(description=_("duration"))
    def duration_text(self, job: Job) -> str:
        return duration_text(job.duration)

    @admin.display(description=_("positional arguments"))
    def args_json(self, job: Job) -> str:
        return pretty_json(job.args)

    @admin.display(description=_("keyword arguments"))
    def kwargs_json(self, job: Job) -> str:
        return pretty_json(job.kwargs)

    @admin.display(description=_("result"))
    def result_json(self, job: Job) -> str:
        return pretty_json(job.result)

    @admin.display(description=_("traceback"))
    def traceback_html(self, job: Job) -> str:
        return traceback_block(job.traceback)

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> Any:
        """The workflow's fields only on the page of a job that is part of one."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and (obj.dependencies_total or obj.has_dependents):
            return fieldsets
        return [(title, options) for title, options in fieldsets if title != _("Workflow")]

    # Permissions: records are read-only; each action has its own permission ----------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.cancel_job")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The links of a job's page to the jobs it waits for, and to those waiting for it.
        if lookup in (DEPENDENCIES_OF, DEPENDENTS_OF):
            return True
        return super().lookup_allowed(lookup, value, request)

    # Actions ------------------------------------------------------------------------------------

    @admin.action(description=_("Retry the selected failed jobs"), permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._retry(request, queryset, _left_out(request, queryset))

    @admin.action(description=_("Cancel the selected waiting jobs"), permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        left_out = _left_out(request, queryset)
        outcome = operations.cancel(queryset)
        self._log(request, outcome.changed, gettext("Cancelled."))
        if outcome.changed:
            count = len(outcome.changed)
            self.message_user(
                request,
                ngettext("Cancelled %(count)d job.", "Cancelled %(count)d jobs.", count) % {"count": count},
                messages.SUCCESS,
            )
        if outcome.refused:
            self.message_user(
                request,
                ngettext(
                    "%(count)d job was not cancelled: "
                    "only queued, scheduled, retrying or deferred jobs can be.",
                    "%(count)d jobs were not cancelled: "
                    "only queued, scheduled, retrying or deferred jobs can be.",
                    outcome.refused,
                )
                % {"count": outcome.refused},
                messages.WARNING,
            )
        if left_out:
            self.message_user(
                request,
                ngettext(
                    "%(count)d job was not cancelled: since the page was shown, it was deleted "
                    "or no longer matches the list's filters.",
                    "%(count)d jobs were not cancelled: since the page was shown, they were deleted "
                    "or no longer match the list's filters.",
                    left_out,
                )
                % {"count": left_out},
                messages.WARNING,
            )
        elif not outcome.changed and not outcome.refused:
            self.message_user(
                request,
                gettext(
                    "No job was cancelled: since the page was shown, the jobs were deleted "
                    "or no longer match the list's filters."
                ),
                messages.WARNING,
            )

    def _retry(self, request: HttpRequest, queryset: QuerySet[Job], left_out: int = 0) -> operations.Outcome:
        outcome = operations.retry(queryset, user=request.user)
        self._log(request, outcome.changed, gettext("Retried."))
        self._report_retry(request, outcome.counts() + Counter(left_out=left_out))
        return outcome

    def _retry_in_batches(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        """Retry what ``queryset`` selects, ``RETRY_BATCH`` records at a time (keyset pagination by id).

        However many jobs match, no more than one batch of them is held in memory or locked at once.
        """
        total: Counter[str] = Counter()
        last = None
        while True:
            page = queryset.order_by("pk") if last is None else queryset.filter(pk__gt=last).order_by("pk")
            pks = list(page.values_list("pk", flat=True)[:RETRY_BATCH])
            if not pks:
                break
            last = pks[-1]
            batch = Job.objects.using(queryset.db).filter(pk__in=pks)
            outcome = operations.retry(batch, user=request.user, selection=queryset)
            self._log(request, outcome.changed, gettext("Retried."))
            total += outcome.counts()
        self._report_retry(
            request, total, nothing=gettext("No failed job matches the list's filters now: none was retried.")
        )

    def _report_retry(self, request: HttpRequest, counts: Counter[str], nothing: str | None = None) -> None:
        """Tell the person what the retry did, each count in its message; when it found none of the jobs
        chosen on the page (retried or deleted by someone else since), say so rather than nothing."""
        if not +counts:
            self.message_user(
                request,
                nothing
                or gettext(
                    "No job was retried: since the page was shown, the jobs were deleted "
                    "or no longer match the list's filters."
                ),
                messages.WARNING,
            )
            return
        count = counts["changed"]
        if count:
            self.message_user(
                request,
                ngettext("Retried %(count)d job.", "Retried %(count)d jobs.", count) % {"count": count},
                messages.SUCCESS,
            )
        for number, message, level in (
            (
                counts["waiting_again"],
                ngettext(
                    "%(count)d job that a retried job had failed waits for it again.",
                    "%(count)d jobs that retried jobs had failed wait for them again.",
                    counts["waiting_again"],
                ),
                messages.SUCCESS,
            ),
            (
                counts["undispatched"],
                ngettext(
                    "Redis did not answer: %(count)d job will be pushed when it does.",
                    "Redis did not answer: %(count)d jobs will be pushed when it does.",
                    counts["undispatched"],
                ),
                messages.WARNING,
            ),
            (
                counts["refused"],
                ngettext(
                    "%(count)d job was not retried: only failed jobs can be.",
                    "%(count)d jobs were not retried: only failed jobs can be.",
                    counts["refused"],
                ),
                messages.WARNING,
            ),
            (
                counts["key_held"],
                ngettext(
                    "%(count)d job was not retried: another waiting or running job holds its unique key.",
                    "%(count)d jobs were not retried: another waiting or running job holds their unique key.",
                    counts["key_held"],
                ),
                messages.WARNING,
            ),
            (
                counts["left_out"],
                ngettext(
                    "%(count)d job was not retried: since the page was shown, it was deleted "
                    "or no longer matches the list's filters.",
                    "%(count)d jobs were not retried: since the page was shown, they were deleted "
                    "or no longer match the list's filters.",
                    counts["left_out"],
                ),
                messages.WARNING,
            ),
            (
                counts["queue_unknown"],
                ngettext(
                    "%(count)d job was not retried: its queue is not in RQ_QUEUES.",
                    "%(count)d jobs were not retried: their queue is not in RQ_QUEUES.",
                    counts["queue_unknown"],
                ),
                messages.WARNING,
            ),
        ):
            if number:
                self.message_user(request, message % {"count": number}, level)

    def _log(self, request: HttpRequest, records: list[Job], message: str) -> None:
        if records:
            LogEntry.objects.log_actions(
                user_id=_user_id(request), queryset=records, action_flag=CHANGE, change_message=message
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        operations.delete(queryset, lambda selected: super(JobAdmin, self).delete_queryset(request, selected))

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        selected = Job.objects.using(obj._state.db).filter(pk=obj.pk)
        operations.delete(selected, lambda _selected: super(JobAdmin, self).delete_model(request, obj))

    # Views --------------------------------------------------------------------------------------

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/retry/", wrap(require_POST(self.retry_view)), name=f"{prefix}_retry"),
            path("<path:object_id>/cancel/", wrap(require_POST(self.cancel_view)), name=f"{prefix}_cancel"),
            path("retry-failed/", wrap(self.retry_matching_view), name=f"{prefix}_retry_matching"),
            *super().get_urls(),
        ]

    def _changelist_url(self, filters: str = "") -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        return f"{url}?{filters}" if filters else url

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Retry button of a failed job's page."""
        return self._one_job_action(request, object_id, self.has_retry_permission, self._retry)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Cancel button of a waiting job's page."""
        return self._one_job_action(request, object_id, self.has_cancel_permission, self.cancel_selected)

    def _one_job_action(
        self, request: HttpRequest, object_id: str, allowed: Callable, action: Callable
    ) -> HttpResponse:
        if not allowed(request):
            raise PermissionDenied
        back = HttpResponseRedirect(self._changelist_url(request.GET.get("_changelist_filters", "")))
        job = self.get_object(request, unquote(object_id))
        if job is None:
            # Deleted since its page was shown (by another person, say): said as Django's own buttons say it,
            # in Django's words (and so its translations).
            said = "%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?"  # noqa: RUF001
            message = gettext(said) % {
                "name": self.opts.verbose_name,
                "key": unquote(object_id),
            }
            self.message_user(request, message, messages.WARNING)
            return back
        action(request, self.get_queryset(request).filter(pk=job.pk))
        return back

    def retry_matching_view(self, request: HttpRequest) -> HttpResponse:
        """Retry every failed job that the change list's current filters and search select.

        GET shows how many that is and asks for confirmation; POST (same query string) retries them.
        """
        if not self.has_retry_permission(request):
            raise PermissionDenied
        filters = request.GET.urlencode()
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, gettext("Those filters are not valid."), messages.ERROR)
            return HttpResponseRedirect(self._changelist_url())
        matching = changelist.get_queryset(request).filter(status=Status.FAILED)
        if request.method == "POST":
            self._retry_in_batches(request, matching)
            return HttpResponseRedirect(self._changelist_url(filters))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Retry failed jobs"),
            "count": matching.count(),
            "sample": matching[:10],
            "filters": filters,
            "changelist_url": self._changelist_url(filters),
        }
        return TemplateResponse(request, "jobs/admin/retry_matching.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra = {
            "can_retry": self.has_retry_permission(request),
            "retry_matching_query": _without(request.GET, "p", "o", "e").urlencode(),
            "dashboard_url": reverse("admin:jobs_dashboard_changelist"),
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        content_type = ContentType.objects.get_for_model(self.model)
        extra = {
            "can_retry": self.has_retry_permission(request),
            "can_cancel": self.has_cancel_permission(request),
            "failed_status": Status.FAILED,
            "waiting_statuses": list(CANCELLABLE),
            "admin_history": LogEntry.objects.filter(content_type=content_type, object_id=object_id)
            .select_related("user")
            .order_by("-action_time")[:50],
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


def _left_out(request: HttpRequest, queryset: QuerySet[Job]) -> int:
    """How many of the jobs the person ticked on the change list the action's ``queryset`` no longer holds:
    deleted since the page was shown, or no longer matching its filters (another person retried them, a
    worker ended them). 0 for "select all" (the filters are the selection) and for a job page's button."""
    if str(request.POST.get("select_across", "")).lower() not in ("", "0", "false"):
        return 0
    as_pk = Job._meta.pk.to_python
    ticked = {as_pk(value) for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)}
    return max(0, len(ticked) - queryset.count()) if ticked else 0


def _without(query: QueryDict, *names: str) -> QueryDict:
    """The query string minus paging and ordering, which do not change which jobs match."""
    query = query.copy()
    for name in names:
        query.pop(name, None)
    return query


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """The dashboard of queues, workers and throughput; its entry on the index is its only change list."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("jobs.view_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="jobs_dashboard_changelist"),
            path("data/", wrap(self.data_view), name="jobs_dashboard_data"),
            path(
                "queues/<str:queue>/pause/",
                wrap(require_POST(self.pause_view)),
                name="jobs_dashboard_pause",
            ),
            path(
                "queues/<str:queue>/resume/",
                wrap(require_POST(self.resume_view)),
                name="jobs_dashboard_resume",
            ),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return dashboard_views.page(request, self.admin_site, self.opts)

    def data_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return dashboard_views.data(request)

    def pause_view(self, request: HttpRequest, queue: str) -> HttpResponse:
        return self._set_paused(request, queue, paused=True)

    def resume_view(self, request: HttpRequest, queue: str) -> HttpResponse:
        return self._set_paused(request, queue, paused=False)

    def _log_queue_change(self, request: HttpRequest, queue: str, message: str) -> None:
        LogEntry.objects.create(
            user_id=_user_id(request),
            content_type=ContentType.objects.get_for_model(Dashboard, for_concrete_model=False),
            object_id=queue,
            object_repr=gettext("queue %(queue)s") % {"queue": queue},
            action_flag=CHANGE,
            change_message=message,
        )

    def _set_paused(self, request: HttpRequest, queue: str, *, paused: bool) -> HttpResponse:
        """Pause or resume one queue: its jobs stay queued, and workers skip it while it is paused."""
        if not request.user.has_perm("jobs.pause_queue"):
            raise PermissionDenied
        if queue not in settings.RQ_QUEUES:
            raise Http404(gettext("No queue named %(queue)s.") % {"queue": queue})
        try:
            changed = pause.pause(queue) if paused else pause.resume(queue)
        except RedisTimeoutError:
            # Sent, and not answered: Redis carries the command out when it answers again. The person is
            # told so, and the request is recorded as the change it may become.
            self._log_queue_change(
                request,
                queue,
                gettext("Asked to pause; Redis did not answer in time.")
                if paused
                else gettext("Asked to resume; Redis did not answer in time."),
            )
            text = (
                gettext(
                    "Redis did not answer in time; queue %(queue)s may be paused once it does: "
                    "see the queue's state below."
                )
                if paused
                else gettext(
                    "Redis did not answer in time; queue %(queue)s may be resumed once it does: "
                    "see the queue's state below."
                )
            )
            self.message_user(request, text % {"queue": queue}, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:jobs_dashboard_changelist"))
        except RedisError as exc:
            self.message_user(
                request,
                gettext("Redis did not answer; queue %(queue)s is unchanged: %(error)s")
                % {"queue": queue, "error": exc},
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:jobs_dashboard_changelist"))
        if changed:
            self._log_queue_change(request, queue, gettext("Paused.") if paused else gettext("Resumed."))
            text = (
                gettext("Queue %(queue)s is paused: its jobs stay queued until it is resumed.")
                if paused
                else gettext("Queue %(queue)s is resumed.")
            )
            self.message_user(request, text % {"queue": queue}, messages.SUCCESS)
        else:
            text = (
                gettext("Queue %(queue)s was already paused.")
                if paused
                else gettext("Queue %(queue)s was not paused.")
            )
            self.message_user(request, text % {"queue": queue}, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:jobs_dashboard_changelist"))
