"""Views cached with @cache_view, for tests/test_cache_views.py (``@pytest.mark.urls``)."""

import datetime
import zoneinfo

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone, translation
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
    path("article-by-name/<str:slug>", article),
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


# Pages that depend on more than their path and query: each must reach only the visitor it was made for.


@cache_view(ttl=60)
def whoami(request):
    """Authentication done inside the view (a token, as DRF or a proxy would check it)."""
    token = request.headers.get("Authorization", "nobody")
    return HttpResponse(f"hello {token} #{_ran('whoami')}")


@cache_view(ttl=60, vary_on=["Authorization"])
def whoami_keyed(request):
    token = request.headers.get("Authorization", "nobody")
    return HttpResponse(f"hello {token} #{_ran('whoami_keyed')}")


def thanks(request):
    messages.success(request, "Thanks, Ada")
    return HttpResponseRedirect("/board")


BOARD = engines["django"].from_string(
    "{% for message in messages %}<p>{{ message }}</p>{% endfor %}board #{{ run }}"
)


@cache_view(ttl=60)
def board(request):
    """A page whose template shows the visitor's flash messages."""
    return HttpResponse(BOARD.render({"run": _ran("board")}, request))


@cache_view(ttl=60)
def board_later(request):
    """The same page, rendered once the view has returned (a TemplateResponse)."""
    return TemplateResponse(request, BOARD, {"run": _ran("board")})


@cache_view(ttl=60, per_user=True)
def basket(request):
    """Gives every new visitor a basket of their own, kept in the session."""
    if "basket" not in request.session:
        request.session["basket"] = _ran("basket_made")
    return HttpResponse(f"basket {request.session['basket']} #{_ran('basket')}")


def _in_language(name: str) -> str:
    return f"{translation.get_language()} {translation.gettext('yes,no,maybe')} #{_ran(name)}"


@cache_view(ttl=60)
def hello(request):
    """Translated by the active language, which LocaleMiddleware chose."""
    return HttpResponse(_in_language("hello"))


@cache_view(ttl=60, vary_on=["Accept-Language"])
def hello_vary(request):
    """As the README shows it: varies on Accept-Language."""
    return HttpResponse(_in_language("hello"))


@cache_view(ttl=60)
def hello_chosen(request):
    """Without LocaleMiddleware: the view picks the language the request asks for."""
    with translation.override(translation.get_language_from_request(request)):
        return HttpResponse(f"{translation.get_language()} #{_ran('hello')}")


NOON = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)


@cache_view(ttl=60)
def clock(request):
    return HttpResponse(f"{timezone.localtime(NOON):%H:%M %Z} #{_ran('clock')}")


@cache_view(ttl=60)
def themed(request):
    return HttpResponse(f"theme {request.COOKIES.get('theme', 'plain')} #{_ran('themed')}")


@cache_view(ttl=60)
def scripted(request):
    from django.middleware.csp import get_nonce

    return HttpResponse(f'<script nonce="{get_nonce(request)}"></script> #{_ran("scripted")}')


@cache_view(ttl=60)
def device(request):
    return HttpResponse(f"{request.device} page #{_ran('device')}")


@cache_view(ttl=60)
def skinned(request):
    return HttpResponse(f"skin {request.skin} #{_ran('skinned')}")


@cache_view(ttl=60)
def prices(request):
    return HttpResponse(f"prices in {request.currency} #{_ran('prices')}")


class TimezoneMiddleware:
    """Activates the time zone a visitor chose (in a cookie), as Django's documentation shows."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz")
        if name:
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return self.get_response(request)


class DeviceMiddleware:
    """Tells the view the visitor's device, and says so in ``Vary`` only once the view has answered."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.device = "mobile" if "Mobile" in request.headers.get("User-Agent", "") else "desktop"
        response = self.get_response(request)
        patch_vary_headers(response, ["User-Agent"])
        return response


class SkinMiddleware:
    """Tells the view the visitor's skin, read from a cookie before the view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.skin = request.COOKIES.get("skin", "plain")
        return self.get_response(request)


class CurrencyMiddleware:
    """Tells the view the visitor's currency, kept in their session (``?currency=`` sets it), before the
    view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "currency" in request.GET:
            request.session["currency"] = request.GET["currency"]
        request.currency = request.session.get("currency", "EUR")
        return self.get_response(request)


urlpatterns += [
    path("whoami", whoami),
    path("whoami-keyed", whoami_keyed),
    path("thanks", thanks),
    path("board", board),
    path("board-later", board_later),
    path("basket", basket),
    path("hello", hello),
    path("hello-vary", hello_vary),
    path("hello-chosen", hello_chosen),
    path("clock", clock),
    path("themed", themed),
    path("scripted", scripted),
    path("device", device),
    path("prices", prices),
    path("skinned", skinned),
]


# Inputs a page may depend on beyond its path and query (tests/test_cache_view_inputs.py).

CARTS: dict[str | None, list[str]] = {}


def add_to_cart(request, item):
    """Gives the visitor a session of their own and files an item under its key, as shops do."""
    request.session["started"] = True
    request.session.save()
    CARTS.setdefault(request.session.session_key, []).append(item)
    return HttpResponse("added")


@cache_view(ttl=60)
def cart_by_key(request):
    """An anonymous visitor's cart, found by their session key: no session data is read."""
    return HttpResponse(f"cart {CARTS.get(request.session.session_key, [])} #{_ran('cart_by_key')}")


@cache_view(ttl=60)
def welcome(request):
    """Tells a returning visitor (one with a session) from a new one, without reading the session's data."""
    return HttpResponse(f"{'new' if request.session.is_empty() else 'returning'} #{_ran('welcome')}")


@cache_view(ttl=60)
def intranet(request):
    """Behind the web server's own login (Apache Basic auth, mod_auth_kerb): it passes REMOTE_USER."""
    return HttpResponse(f"hello {request.META.get('REMOTE_USER', 'nobody')} #{_ran('intranet')}")


@cache_view(ttl=60)
def raw_cookie(request):
    n = _ran("raw_cookie")
    response = HttpResponse(f"variant {n}")
    response["Set-Cookie"] = f"ab=variant-{n}; Path=/"
    return response


@cache_view(ttl=60)
def absolute(request):
    return HttpResponse(f"link {request.build_absolute_uri('/x')} #{_ran('absolute')}")


@cache_view(ttl=60, tags=lambda request: [request.GET.get("category", "")])
def listing(request):
    """Tagged by a query parameter, which a visitor may leave out (an empty tag)."""
    return HttpResponse(f"listing {request.GET.get('category', 'all')} #{_ran('listing')}")


@cache_view(ttl=60, tags=lambda request: [f"shelf:{request.GET['shelf']}"])
def shelf(request):
    """Tagged by a query parameter the tags function reads without a default."""
    return HttpResponse(f"shelf {request.GET.get('shelf', 'none')} #{_ran('shelf')}")


urlpatterns += [
    path("add-to-cart/<str:item>", add_to_cart),
    path("cart-by-key", cart_by_key),
    path("welcome", welcome),
    path("intranet", intranet),
    path("raw-cookie", raw_cookie),
    path("absolute", absolute),
    path("listing", listing),
    path("shelf", shelf),
]
