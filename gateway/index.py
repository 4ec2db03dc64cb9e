"""The gateway's ``/``: an index of the cloud's services, with links to each one's GraphiQL and admin.

The links come from the ``url`` a service announces (``NAUTILUS_PUBLIC_URL``, set per service
by ``manage.py cloud up``); a service announced without one is listed without links. The
services' own APIs are internal (``nautilus_core.internal``), so their addresses are shown to
internal callers only (staff signed in to the gateway's admin, or the internal token).
``?format=json`` (or ``Accept: application/json``) gives the same list as JSON, for ``cloud status``.
Each service is ``up`` or ``unavailable`` (it missed its heartbeats; see ``gateway.registry``).
"""
from django.http import JsonResponse
from django.shortcuts import render

from nautilus_core.internal import is_internal

from .registry import registry

__all__ = ["index"]


def _entry(snapshot, name, summary, kind, inside):
    url = summary.get("url") if inside else None
    silence = snapshot.silence(name)
    return {"name": name, "kind": kind, "version": summary.get("version", ""), "url": url,
            "graphql": f"{url}/graphql" if url else None, "admin": f"{url}/admin/" if url else None,
            "state": snapshot.state(name), "silent_for": round(silence) if silence is not None else None}


def index(request):
    snapshot, inside = registry.snapshot(), is_internal(request)
    services = sorted([*(_entry(snapshot, n, s, "model", inside) for n, s in snapshot.models.items()),
                       *(_entry(snapshot, n, s, "connection", inside) for n, s in snapshot.connections.items())],
                      key=lambda entry: entry["name"])
    if request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"services": services})
    return render(request, "gateway/index.html", {"services": services, "inside": inside})
