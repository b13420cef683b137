from django.contrib import admin

from .models import FailedAttempt, Job


class FailedAttemptInline(admin.TabularInline):
    model = FailedAttempt
    extra = 0
    can_delete = False
    fields = ("number", "worker_name", "started_at", "failed_at", "error_class", "error_message")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "function",
        "queue",
        "status",
        "attempts",
        "progress",
        "enqueued_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "queue")
    search_fields = ("=id", "function")
    inlines = [FailedAttemptInline]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
