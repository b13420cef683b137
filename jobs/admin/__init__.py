"""The Django admin of jobs: the Job admin and its actions, the dashboard, the schedules, and what a person
may do."""

from .job_admin import DashboardAdmin, JobAdmin
from .schedule_admin import ScheduleAdmin

__all__ = ["DashboardAdmin", "JobAdmin", "ScheduleAdmin"]
