"""The seam to RQ: the only part of `jobs` that imports ``rq`` or ``django_rq`` or touches RQ's internals.

Everything else speaks of records, queue names and runs; the modules here turn that into RQ's jobs,
queues, registries and workers:

- ``connection``: the Redis connection and RQ queue of each queue name (django-rq's ``RQ_QUEUES``);
- ``runner``: the one function every RQ job of `jobs` calls, and its arguments;
- ``queues``: pushing, cancelling and deleting the RQ jobs of records, and what Redis holds of them;
- ``worker``: the RQ worker classes that the `jobs` workers (``jobs.worker``) are built on.

This module itself imports nothing, so that the system checks can name what the transport needs.
"""

#: The Django app that reads ``RQ_QUEUES`` and runs ``manage.py rqworker``.
DJANGO_APP = "django_rq"
#: The serializer every queue and worker of `jobs` uses: nothing read from Redis is unpickled.
JSON_SERIALIZER = "rq.serializers.JSONSerializer"
