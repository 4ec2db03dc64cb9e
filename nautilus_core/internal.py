"""A service's own HTTP API is the cloud's inside: for staff and for the cloud's own tools.

A model or connection service's ``/graphql`` reads every row without the gateway's rules,
so it answers only

- a staff user signed in to the service's admin (Django's session), or
- a request with the header ``X-Nautilus-Internal-Token: <token>``: ``NAUTILUS_INTERNAL_TOKEN``,
  or by default a token derived from the secret key (so every process of a cloud that shares
  the key, ``cloud status`` included, knows it without another setting),

unless ``NAUTILUS_OPEN_SERVICE_APIS=1`` opens it on purpose. ``/health`` stays open; the
admin asks for its own staff login. The gateway's ``/graphql`` is public and applies the
cloud's rules; its index lists the services' addresses to internal callers only.
"""
import functools
import hashlib
import hmac

from django.conf import settings
from django.http import JsonResponse
from django.contrib.auth.views import redirect_to_login
from django.urls import reverse

from .conf import nautilus_settings

__all__ = ["HEADER", "derive_internal_token", "internal_token", "is_internal", "internal"]

HEADER = "X-Nautilus-Internal-Token"


def derive_internal_token(secret_key):
    """The default internal token of a cloud whose services share ``secret_key`` (not the key itself)."""
    return hmac.new(secret_key.encode(), b"nautilus.internal-token", hashlib.sha256).hexdigest()


def internal_token():
    return nautilus_settings.INTERNAL_TOKEN or derive_internal_token(settings.SECRET_KEY)


def is_internal(request):
    """Whether the request comes from the cloud's inside: a staff session or the internal token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    given = request.headers.get(HEADER, "")
    return bool(given) and hmac.compare_digest(given.encode(), internal_token().encode())


def internal(view):
    """The view for internal callers only (or anyone with ``OPEN_SERVICE_APIS``): others get a 403,
    or in a browser the admin's login page."""
    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if nautilus_settings.OPEN_SERVICE_APIS or is_internal(request):
            return view(request, *args, **kwargs)
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return JsonResponse({"errors": [{"message": (
            f"This service's API is internal: sign in to its admin as staff or send the header {HEADER}; "
            "clients use the gateway.")}]}, status=403)

    return guarded
