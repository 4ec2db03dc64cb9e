"""The original's ``nautilus.network.http``: HTTP endpoints are Django views now."""
from .._gone import gone
from . import HTTP_REPLACEMENTS

__getattr__ = gone(__name__, HTTP_REPLACEMENTS)
