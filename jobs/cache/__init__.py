"""Cache-aside for functions and views, in Redis through Django's cache framework and django-redis.

``from jobs.cache import cached, cache_view, invalidate_tags, invalidate_on_change``; counts per
namespace are read with ``jobs.cache.stats.read()``.
"""

from typing import TYPE_CHECKING

__all__ = ["cache_view", "cached", "invalidate_on_change", "invalidate_tags"]

if TYPE_CHECKING:
    from .decorator import cached
    from .invalidation import invalidate_on_change, invalidate_tags
    from .views import cache_view


def __getattr__(name: str):
    if name == "cached":
        from .decorator import cached

        return cached
    if name == "cache_view":
        from .views import cache_view

        return cache_view
    if name in ("invalidate_tags", "invalidate_on_change"):
        from . import invalidation

        return getattr(invalidation, name)
    raise AttributeError(f"module 'jobs.cache' has no attribute {name!r}")
