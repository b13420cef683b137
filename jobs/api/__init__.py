"""A small JSON API over the job records; include ``jobs.api.urls`` in the project's urls."""
