"""The demo's task of Django's task framework (``django.tasks``; the django-tasks backport on Django 5.2)."""

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task  # type: ignore[no-redef,assignment,unused-ignore]


@task(takes_context=True)
async def shout(context, msg: str) -> str:
    """An async task, given its context: the message in capitals, with the attempt that ran it."""
    return f"{msg.upper()} (attempt {context.attempt})"
