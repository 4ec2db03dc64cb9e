"""HTTP views every service serves: its GraphQL API and its health checks (readiness and liveness)."""
import os
import threading
import time

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django_graphiql_static.views import GraphiQLOfflineView

from . import runner
from .consuming import consuming_file_age
from .http_processes import WORKER_FILE_ENV
from . import http
from .graphql import execute_query
from .service import get_service


def graphql_view(schema):
    """``/graphql``: GraphQL over HTTP (``nautilus_core.http``), GraphiQL in a browser (assets served locally)."""
    graphiql = GraphiQLOfflineView.as_view(schema=schema, graphiql=True)

    @csrf_exempt
    def view(request):
        if http.wants_graphiql(request):
            return graphiql(request)
        try:
            graphql_request = http.read_request(request)
        except http.BadRequest as exc:
            return http.respond_bad_request(request, exc)
        return http.respond(request, execute_query(schema, graphql_request.query, graphql_request.variables,
                                                   graphql_request.operation_name, context=request), graphql_request)

    return view


def health(request):
    """``/health``: readiness. 200 while the worker consumes and the broker and the database answer;
    otherwise 503, naming the part that is down. Checked at most once a second (the answer is kept)."""
    body = _readiness()
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


def live(request):
    """``/health/live``: liveness. 200 whenever this process serves HTTP (its worker may be restarting).
    ``pid``: the process that answered (one of several: ``runservice --http-processes``)."""
    return JsonResponse({"status": "alive", "service": get_service().name, "pid": os.getpid()})


# A worker that has not touched its consuming file for this long is stuck (a solo-pool worker
# touches it between actions).
STALE_AFTER = 10.0
_readiness_cache = {"at": float("-inf"), "body": None}
_readiness_lock = threading.Lock()


def _readiness(max_age=1.0):
    with _readiness_lock:
        if time.monotonic() - _readiness_cache["at"] < max_age:
            return _readiness_cache["body"]
        service = get_service()
        parts = {"worker": _worker_state(), "broker": _broker_state(), "database": _database_state()}
        down = any(state not in ("ok", "consuming", "not run by this process") for state in parts.values())
        body = {"service": service.name, "version": service.summarize()["version"],
                "status": "unavailable" if down else "ok", **parts, "pid": os.getpid()}
        _readiness_cache.update(at=time.monotonic(), body=body)
        return body


def _worker_state():
    supervisor = runner.current()
    if supervisor is not None:
        if supervisor.state != "running":
            return supervisor.state  # restarting, gave up, stopped
        if supervisor.process is None or supervisor.process.poll() is not None:
            return "exited"
        path = supervisor.consuming_file
    else:  # one of runservice's HTTP processes: its worker is its parent's
        path = os.environ.get(WORKER_FILE_ENV)
        if not path:
            return "not run by this process"  # runserver, or a worker started on its own
    age = consuming_file_age(path)
    if age is None:
        return "not consuming"
    return "consuming" if age < STALE_AFTER else f"not consuming (stuck for {age:.0f}s)"


def _broker_state():
    from .celery import app

    try:
        with app.connection_for_write().clone(connect_timeout=1) as probe:
            probe.connect()
    except Exception as exc:  # the point of a health check is to say so, not to crash
        return f"unreachable: {' '.join(str(exc).split()) or type(exc).__name__}"
    return "ok"


def _database_state():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"unreachable: {' '.join(str(exc).split())}"
    return "ok"
