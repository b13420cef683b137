"""Views cached with @cache_view, for tests/test_cache_views.py (``@pytest.mark.urls``)."""

from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import path
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection

from jobs.cache import cache_view

RUNS = "test:view-runs:"


def runs(name: str) -> int:
    return int(get_redis_connection("default").get(RUNS + name) or 0)


def _ran(name: str) -> int:
    return get_redis_connection("default").incr(RUNS + name)


@cache_view(ttl=60)
def page(request):
    n = _ran("page")
    return JsonResponse({"run": n, "query": sorted(request.GET.lists())})


@cache_view(ttl=60)
def greeting(request):
    n = _ran("greeting")
    user = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"hello {user} #{n}")


@cache_view(ttl=60, per_user=True)
def dashboard(request):
    n = _ran("dashboard")
    user = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"dashboard of {user} #{n}")


@cache_view(ttl=60)
def sets_cookie(request):
    n = _ran("sets_cookie")
    response = HttpResponse(f"cookie #{n}")
    response.set_cookie("flavour", "oat")
    return response


@cache_view(ttl=60)
def marked(request, directive):
    n = _ran("marked")
    response = HttpResponse(f"{directive} #{n}")
    patch_cache_control(response, **{directive.replace("-", "_"): True})
    return response


@cache_view(ttl=60)
def with_form(request):
    n = _ran("with_form")
    return HttpResponse(f'<input name="csrfmiddlewaretoken" value="{get_token(request)}"> #{n}')


@cache_view(ttl=60)
def by_language(request):
    n = _ran("by_language")
    response = HttpResponse(f"{request.headers.get('Accept-Language', '-')} #{n}")
    patch_vary_headers(response, ["Accept-Language"])
    return response


@cache_view(ttl=60)
def vary_star(request):
    n = _ran("vary_star")
    response = HttpResponse(f"star #{n}")
    response["Vary"] = "*"
    return response


@cache_view(ttl=60)
def missing(request):
    _ran("missing")
    return HttpResponse("no such thing", status=404)


@cache_view(ttl=60)
@require_GET
def counter(request):
    return HttpResponse(f"#{_ran('counter')}")


@cache_view(ttl=60)
def any_method(request):
    return HttpResponse(f"{request.method} #{_ran('any_method')}")


@cache_view(ttl=30, tags=lambda request, slug: [f"article:{slug}"])
def article(request, slug):
    return HttpResponse(f"{slug} #{_ran('article')}")


@cache_view(ttl=1, stale=60)
def news(request):
    return HttpResponse(f"news #{_ran('news')}")


urlpatterns = [
    path("page", page),
    path("greeting", greeting),
    path("dashboard", dashboard),
    path("cookie", sets_cookie),
    path("marked/<str:directive>", marked),
    path("form", with_form),
    path("language", by_language),
    path("star", vary_star),
    path("missing", missing),
    path("counter", counter),
    path("any", any_method),
    path("article/<slug:slug>", article),
    path("news", news),
]

PLAIN_RUNS: list[int] = []


@cache_view(ttl=60)
def plain(request):
    """Touches no Redis of its own, so it answers while Redis is down."""
    PLAIN_RUNS.append(1)
    return HttpResponse(f"plain #{len(PLAIN_RUNS)}")


urlpatterns.append(path("plain", plain))


@cache_view(ttl=60)
def cart(request):
    """An anonymous visitor's page that reads the session: it must never reach another visitor."""
    items = request.session.get("cart", [])
    return HttpResponse(f"cart {items} #{_ran('cart')}")


def fill_cart(request):
    request.session["cart"] = ["tea"]
    return HttpResponse("filled")


urlpatterns += [path("cart", cart), path("fill-cart", fill_cart)]
