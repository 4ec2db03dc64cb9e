"""The original's ``nautilus.network.http``: HTTP endpoints are Django views now."""
from .._gone import gone

__getattr__ = gone(__name__, {
    "RequestHandler": "an HTTP endpoint is a Django view: a function `def view(request)` or a django.views.View "
                      "subclass, given to Service.route(url) or service.add_http_endpoint(url, view).",
    "Response": "return a django.http.HttpResponse (or JsonResponse) from the view.",
})
