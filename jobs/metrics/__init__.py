"""Prometheus metrics of the ledger, the queues, the workers and the cache (needs ``prometheus-client``,
the ``metrics`` extra). Off until a project includes ``jobs.metrics.urls``; see the README's Metrics."""

try:
    import prometheus_client  # noqa: F401
except ImportError as exc:
    from ..exceptions import JobsConfigurationError

    raise JobsConfigurationError(
        "jobs.metrics needs prometheus-client: pip install 'django-jobs-ledger[metrics]'"
    ) from exc
