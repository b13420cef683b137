"""The Django admin of jobs: the Job admin and its actions, the dashboard, and what a person may do."""

from .job_admin import DashboardAdmin, JobAdmin

__all__ = ["DashboardAdmin", "JobAdmin"]
