"""The dashboard's two views: the page (which refreshes its sections itself) and its data as JSON."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext

from . import figures

#: Seconds between two refreshes of the page's sections.
REFRESH_SECONDS = 5


def page(request: HttpRequest, site: AdminSite, opts: Any) -> HttpResponse:
    """The whole page, or with ``?partial=1`` only its sections (what the page's script fetches)."""
    data = figures.snapshot()
    sections = [{"section": section, "data": data[section.name]} for section in figures.SECTIONS]
    context = {
        **site.each_context(request),
        "opts": opts,
        "title": gettext("Jobs dashboard"),
        "sections": sections,
        "refresh_seconds": REFRESH_SECONDS,
    }
    template = "jobs/admin/dashboard/sections.html" if request.GET.get("partial") else None
    return TemplateResponse(request, template or "jobs/admin/dashboard.html", context)


def data(request: HttpRequest) -> HttpResponse:
    """Every section's figures as JSON, for scripts and monitoring."""
    return JsonResponse(figures.snapshot(), encoder=DjangoJSONEncoder)
