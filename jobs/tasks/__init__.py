"""A backend for Django's task framework (``django.tasks``, or the ``django-tasks`` backport on
Django 5.2): ``TASKS = {"default": {"BACKEND": "jobs.tasks.JobsBackend"}}``."""

from .backend import JobsBackend

__all__ = ["JobsBackend"]
