"""``@cached``: cache-aside for functions, with a TTL and jitter, one computer per miss, and optional
stale-while-revalidate through a ``jobs`` job."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from django.db import DatabaseError
from django.db import models as db_models

from ..conf import jobs_settings
from ..exceptions import ArgumentNotSerializable, InvalidCacheDefinition
from ..intervals import NEVER
from . import invalidation, keys, stats
from .invalidation import watch_model
from .refresh import refresh_entry, register_refreshable
from .store import ERRORS, FRESH, MISSING, CacheStore, Unstorable, release, store

logger = logging.getLogger("jobs")

P = ParamSpec("P")
R = TypeVar("R")

Tags = Iterable[str] | Callable[..., Iterable[str]]


def check_seconds(name: str, value: Any, allow_zero: bool = False) -> None:
    """A number of seconds from 0 (or just above) to ten years, which Redis can expire an entry by."""
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value >= 0 if allow_zero else value > 0) or not value <= NEVER:
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidCacheDefinition(
            f"{name} must be a number of seconds {bound} and at most {NEVER} (ten years), not {value!r}"
        )


def static_tags(tags: Tags) -> tuple[str, ...] | None:
    """Tags given as a list are checked at once; a callable's tags when it is called."""
    if callable(tags):
        return None
    if isinstance(tags, str):
        raise InvalidCacheDefinition(f"tags must be a list of strings or a callable, not the string {tags!r}")
    return tuple(keys.check_tag(tag) for tag in tags)


def tag_function(tags: Tags) -> Callable[..., Iterable[str]]:
    """What gives a call's tags: the callable given, or (for a list, checked once) nothing more."""
    if callable(tags):
        return tags
    return lambda *args, **kwargs: ()


def computed_tags(compute: Callable[[], Any], namespace: str, call: str = "") -> tuple[str, ...] | None:
    """The tags a tags callable gives for one call, or None (logged) if it raised or gave something other
    than non-empty strings: tags made of a call's data (an empty id) must not break the call. One string
    is refused (``InvalidCacheDefinition``), as ``tags="item"`` is: it would be a tag per character."""
    try:
        result = compute()
    except Exception:
        logger.warning("%s is not cached%s: its tags callable raised", namespace, call, exc_info=True)
        return None
    if isinstance(result, str | bytes):
        raise InvalidCacheDefinition(
            f"the tags callable of {namespace} must return a list of strings, not the string {result!r}"
        )
    try:
        return tuple(keys.check_tag(tag) for tag in result)
    except (InvalidCacheDefinition, TypeError) as exc:
        logger.warning("%s is not cached%s: bad tags (%s)", namespace, call, exc)
        return None


def tag_parameters(
    tags: Callable[..., Any], signature: inspect.Signature, target: str
) -> tuple[str, ...] | None:
    """The names of the function's parameters that its tags callable takes (by name), or None for all
    of them (``**kwargs``). A parameter the function has not, or one taken by position, is refused."""
    try:
        wanted = inspect.signature(tags).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): it gets every parameter
        return None
    names = []
    for parameter in wanted:
        if parameter.kind is parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            raise InvalidCacheDefinition(
                f"the tags callable of {target} takes the function's parameters by name, "
                f"not {parameter} by position"
            )
        if parameter.name in signature.parameters:
            names.append(parameter.name)
        elif parameter.default is parameter.empty:
            raise InvalidCacheDefinition(
                f"the tags callable of {target} takes {parameter.name!r}, which is not a parameter of "
                f"{target}{signature}"
            )
    return tuple(names)


def model_tags(watched: Sequence[type[db_models.Model]], alias: str | None) -> tuple[str, ...]:
    tags = []
    for model in watched:
        if not (isinstance(model, type) and issubclass(model, db_models.Model)):
            raise InvalidCacheDefinition(f"models must be model classes, not {model!r}")
        watch_model(model, alias)
        tags.append(keys.model_tag(model))
    return tuple(tags)


def check_default_namespace(func: Callable[..., Any]) -> None:
    """A function's dotted path is its namespace only if it names that function and nothing else: not a
    lambda (every one is ``<lambda>``), not one defined in a function (one per call, each over its own
    values: a currency, ``request.user``), not a closure; they would share one another's entries."""
    free = set(getattr(getattr(func, "__code__", None), "co_freevars", ())) - {"__class__"}
    if func.__name__ == "<lambda>":
        what = "is a lambda"
    elif "<locals>" in func.__qualname__:
        what = "is defined inside a function"
    elif free:
        what = f"is a closure over {', '.join(sorted(free))}"
    else:
        return
    raise InvalidCacheDefinition(
        f"@cached {func.__module__}.{func.__qualname__} {what}: its dotted path does not tell its entries "
        "from those of another function, or of another call that defined it, so give it namespace=, one "
        "of its own for each (namespace=f'rates-{currency}'), or pass what it depends on as an argument"
    )


class CachePolicy:
    """What a cached function and a cached view share: freshness, namespace, version and tags."""

    def __init__(
        self,
        target: str,
        *,
        ttl: float | None,
        stale: float | None,
        namespace: str | None,
        version: int,
        tags: Tags,
        alias: str | None,
    ) -> None:
        check_seconds("ttl", ttl)
        check_seconds("stale", stale, allow_zero=True)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidCacheDefinition(f"version must be a whole number >= 0, not {version!r}")
        self.target = target
        self.namespace = keys.namespace_for(namespace, target)
        self.version = version
        self._ttl = ttl
        self._stale = stale
        self._static_tags = static_tags(tags)
        self._tags = tag_function(tags)
        self.alias = alias

    @property
    def ttl(self) -> float:
        return self._ttl if self._ttl is not None else jobs_settings.CACHE_TTL

    @property
    def stale(self) -> float:
        return self._stale if self._stale is not None else jobs_settings.CACHE_STALE


class CachedFunction(CachePolicy, Generic[P, R]):
    """A function whose results are cached. ``fn.invalidate(*args)`` drops one call's entry."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        ttl: float | None,
        stale: float | None,
        namespace: str | None,
        version: int,
        tags: Tags,
        models: Sequence[type[db_models.Model]],
        cache_none: bool,
        alias: str | None,
    ) -> None:
        if (
            inspect.iscoroutinefunction(func)
            or inspect.isasyncgenfunction(func)
            or inspect.isgeneratorfunction(func)
        ):
            raise InvalidCacheDefinition(
                f"@cached {func.__qualname__} returns a coroutine or a generator, which cannot be cached: "
                "cache a plain function it calls (or awaits through asyncio.to_thread)"
            )
        if (stale or 0) > 0 and "<locals>" in func.__qualname__:
            raise InvalidCacheDefinition(
                f"{func.__qualname__}: stale-while-revalidate refreshes on a worker, which imports the "
                "function: define it at module level"
            )
        if namespace is None:
            check_default_namespace(func)
        super().__init__(
            f"{func.__module__}.{func.__qualname__}",
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            alias=alias,
        )
        self.func = func
        self._model_tags = model_tags(models, alias)
        self.cache_none = cache_none
        if "<locals>" not in func.__qualname__:
            register_refreshable(self)
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:  # a builtin that says nothing of its parameters
            raise InvalidCacheDefinition(
                f"@cached cannot read the parameters of {func!r}: wrap it in a def"
            ) from exc
        self._signature = signature
        params = signature.parameters.values()
        simple = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self._all_positional = len(signature.parameters) if simple else -1
        self._names = tuple(signature.parameters)
        self._tag_parameters = tag_parameters(tags, signature, self.target) if callable(tags) else ()
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<CachedFunction {self.namespace}>"

    def key_hash(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The hash of a call's arguments, normalised (defaults filled in, keywords in order)."""
        if not kwargs and len(args) == self._all_positional:
            hashed = keys.digest(args, self._names)
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            hashed = keys.digest(bound.arguments.values(), tuple(bound.arguments))
        return hashed

    def key(self, cache: CacheStore, *args: P.args, **kwargs: P.kwargs) -> str:
        """The Redis key of a call's entry."""
        return cache.entry_key(self.namespace, self.version, self.key_hash(*args, **kwargs))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        hashed = self.key_hash(*args, **kwargs)
        cache = store(self.alias)
        if not cache.available():
            stats.count(self.namespace, "errors")
            return self.func(*args, **kwargs)
        key = cache.entry_key(self.namespace, self.version, hashed)
        try:
            state, value, _ = cache.get(key)
        except ERRORS as exc:
            return self._uncached(cache, exc, args, kwargs)
        if state is FRESH:
            stats.count(self.namespace, "hits")
            return value
        if state is not MISSING and self.stale > 0:
            stats.count(self.namespace, "stale")
            self._refresh_later(cache, key, args, kwargs)
            return value
        stats.count(self.namespace, "misses")
        return self._compute(cache, key, args, kwargs)

    def _uncached(self, cache: CacheStore, exc: BaseException, args: Any, kwargs: Any) -> R:
        cache.failed(exc)
        stats.count(self.namespace, "errors")
        return self.func(*args, **kwargs)

    def _compute(self, cache: CacheStore, key: str, args: Any, kwargs: Any) -> R:
        """One caller computes; the others wait for its lock, then read what it stored."""
        lock = cache.lock(key)
        try:
            acquired = lock.acquire()
        except ERRORS as exc:
            return self._uncached(cache, exc, args, kwargs)
        if not acquired:
            # The holder is slow: compute without the cache rather than wait any longer.
            return self.func(*args, **kwargs)
        try:
            tags = self._tags_of(args, kwargs)
            if tags is None:
                stats.count(self.namespace, "bypass:bad-tag")
                return self.func(*args, **kwargs)
            try:
                state, value, _, generations = cache.get_for_update(key, tags)
            except ERRORS as exc:
                return self._uncached(cache, exc, args, kwargs)
            if state is FRESH:
                return value
            value = self.func(*args, **kwargs)
            self._store(cache, key, value, tags, generations)
            return value
        finally:
            release(cache, lock)

    def _tags_of(self, args: Any, kwargs: Any) -> tuple[str, ...] | None:
        """A call's tags, or None if its tags callable could not give them (logged)."""
        tags = self._static_tags
        if tags is None:
            tags = computed_tags(functools.partial(self._call_tags, args, kwargs), self.namespace)
            if tags is None:
                return None
        return tags + self._model_tags

    def _call_tags(self, args: Any, kwargs: Any) -> Any:
        """The tags callable, given the call's arguments by name, defaults filled in."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if self._tag_parameters is None:
            return self._tags(**arguments)
        return self._tags(**{name: arguments[name] for name in self._tag_parameters if name in arguments})

    def _store(
        self, cache: CacheStore, key: str, value: Any, tags: tuple[str, ...], generations: list[Any]
    ) -> None:
        """Store a value computed since ``generations`` were read: unless the entry or one of its tags was
        invalidated meanwhile, or a tag is to be when the transaction it was computed in commits."""
        if value is None and not self.cache_none:
            return
        if invalidation.pending(tags):
            return  # computed from rows this transaction changed, which may yet be rolled back
        if not cache.available():
            return  # Redis failed meanwhile (another caller found out): another timeout would tell nothing
        try:
            cache.put(key, value, self.ttl, self.stale, tags, generations)
        except ERRORS as exc:
            cache.failed(exc)
            stats.count(self.namespace, "errors")
        except Unstorable as exc:
            logger.error("A result of %s cannot be cached: %s", self.namespace, exc)
            stats.count(self.namespace, "errors")

    def _refresh_later(self, cache: CacheStore, key: str, args: Any, kwargs: Any) -> None:
        """Enqueue one refresh job for a stale entry, however many callers see it stale."""
        try:
            if not cache.claim_refresh(key):
                return
        except ERRORS as exc:
            cache.failed(exc)
            return
        try:
            refresh_entry.enqueue(self.target, list(args), dict(kwargs), self.namespace, self.version)
        except (ArgumentNotSerializable, DatabaseError) as exc:
            # The stale value is still served; the entry expires at the end of its stale window.
            logger.warning("Cannot refresh %s on a worker: %s", self.namespace, exc)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Compute a call again and store it (what the refresh job runs)."""
        cache = store(self.alias)
        key = self.key(cache, *args, **kwargs)
        tags = self._tags_of(args, kwargs)
        try:
            if tags is None or not cache.available():
                return self.func(*args, **kwargs)
            try:
                generations = cache.get_for_update(key, tags, refreshing=True)[3]
            except ERRORS as exc:
                cache.failed(exc)
                return self.func(*args, **kwargs)
            value = self.func(*args, **kwargs)
            self._store(cache, key, value, tags, generations)
            stats.count(self.namespace, "refreshes")
        finally:
            if cache.available():
                try:
                    cache.release_refresh(key)
                except ERRORS as exc:
                    cache.failed(exc)
        return value

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry of one call; False if there was none or Redis could not be reached. A caller
        computing that entry meanwhile does not store what it computed."""
        cache = store(self.alias)
        try:
            return bool(cache.invalidate(self.key(cache, *args, **kwargs)))
        except ERRORS as exc:
            cache.failed(exc)
            return False


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def cached(
    *,
    ttl: float | None = None,
    stale: float | None = None,
    namespace: str | None = None,
    version: int = 1,
    tags: Tags = (),
    models: Sequence[type[db_models.Model]] = (),
    cache_none: bool = False,
    alias: str | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    func: Callable[..., Any] | None = None,
    /,
    *,
    ttl: float | None = None,
    stale: float | None = None,
    namespace: str | None = None,
    version: int = 1,
    tags: Tags = (),
    models: Sequence[type[db_models.Model]] = (),
    cache_none: bool = False,
    alias: str | None = None,
) -> Any:
    """Cache a function's results in Redis: ``@cached`` or ``@cached(ttl=60, tags=..., stale=300)``.

    ``ttl``: seconds an entry is fresh (``JOBS['CACHE_TTL']`` if not given), less up to
    ``JOBS['CACHE_JITTER']`` of it. ``stale``: seconds past that during which the old value is served at
    once while one ``jobs`` job computes a new one. ``tags``: strings, or a callable returning a list of
    strings, for ``invalidate_tags()``, given the parameters it names of the call (by name, defaults
    filled in; ``**kwargs`` for all). ``models``: model classes whose save or delete drops
    every entry of this function. ``cache_none``: also cache ``None`` results. Exceptions are never cached.
    """

    def decorate(f: Callable[P, R]) -> CachedFunction[P, R]:
        if (
            not callable(f)
            or isinstance(f, CachedFunction)
            or not isinstance(getattr(f, "__qualname__", None), str)
        ):
            # A functools.partial or a callable object has no name of its own to key or refresh it by.
            raise InvalidCacheDefinition(f"@cached decorates a plain function (a def), not {f!r}")
        return CachedFunction(
            f,
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            models=models,
            cache_none=cache_none,
            alias=alias,
        )

    return decorate(func) if func is not None else decorate
