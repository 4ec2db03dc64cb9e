"""API versions: what a service declares, how an action reaches replicas of its major, and deprecations.

A service declares ``api_version = "MAJOR.MINOR"`` (default ``"1.0"``) and its summary carries it
(``"api_version"``). The minors of one major stay compatible: the gateway refuses an announcement
whose schema breaks the one it serves for that major (``gateway/versions.py``). A new major runs
side by side with the old one, on one bus (README, "Wire protocol"):

- major 1 is the wire format of before versions: routing key = action type, queue ``nautilus.<service>``;
- a replica of major N ≥ 2 consumes the queue ``nautilus.<service>.v<N>``, where each ``.pending``
  type it handles (announcements excepted) is bound as ``<action type>.v<N>``; an ask meant for
  major N is published with that routing key and carries ``"api_major": N`` in its envelope;
- events (``.success``/``.error`` outcomes, ``roll_call``, announcements) are not versioned: every
  listener hears both majors' changes;
- a replica refuses a ``.pending`` action whose ``api_major`` (1 when absent) is not its own, so no
  replay, stray binding or hand-made message makes it apply an action meant for the other major.

A service marks fields deprecated with ``deprecations = {"field": "reason"}``: each is announced
with a ``deprecation_reason`` and is ``@deprecated`` in the gateway's schema.
"""
import re

from django.core import checks

from .actions import ANNOUNCE, PENDING, MalformedAction, status_of

__all__ = ["DEFAULT_API_VERSION", "MAX_MAJOR", "parse_api_version", "api_version_of", "major_of", "is_versioned",
           "routing_key", "queue_name", "check_major", "mark_deprecations", "summary_problem", "check_service"]

DEFAULT_API_VERSION = "1.0"
MAX_MAJOR = 999  # a major is one to three digits: it goes into queue names and URL paths
MAX_REASON = 1000  # characters of a deprecation reason

_VERSION = re.compile(r"([1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,5})")


def parse_api_version(text):
    """``"2.1"`` → ``(2, 1)``; ValueError saying what a version looks like otherwise."""
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise ValueError(f'an api_version is "MAJOR.MINOR" (a major from 1 to {MAX_MAJOR}, a minor from 0, '
                         f'digits only, e.g. "2.1"), not {shown}')
    return int(match[1]), int(match[2])


def api_version_of(summary):
    """``(major, minor)`` of a (validated) summary; a summary without one is ``1.0``, as before versions."""
    return parse_api_version(summary.get("api_version", DEFAULT_API_VERSION))


def major_of(summary):
    """The major of a summary (1 for None: a service the gateway does not know is asked as before)."""
    return api_version_of(summary)[0] if summary else 1


def is_versioned(action_type):
    """Whether an action of this type is meant for one major: a request (``.pending``), but not an announcement."""
    return status_of(action_type) == PENDING and action_type != ANNOUNCE


def routing_key(action_type, major=None):
    """The routing key of an action for ``major``: the action type itself for major 1 and for events."""
    if not major or major == 1 or not is_versioned(action_type):
        return action_type
    return f"{action_type}.v{major}"


def queue_name(service_name, major):
    """The service part of a queue's name: ``recipe`` for major 1, ``recipe.v2`` for major 2."""
    return service_name if major == 1 else f"{service_name}.v{major}"


def check_major(action, service_major, service_name):
    """Refuse a request meant for another major than this replica's (MalformedAction, layer ``envelope``)."""
    wanted = action.api_major or 1
    if is_versioned(action.action_type) and wanted != service_major:
        raise MalformedAction(
            f"{action.action_type} is meant for major {wanted} of the API; this replica of {service_name} serves "
            f"major {service_major}, so it did not apply it", action.to_dict(), layer="envelope")


def mark_deprecations(summary, deprecations):
    """Announce each deprecated field (and each optional input of that name) with its ``deprecation_reason``.

    A required input cannot be deprecated in GraphQL: a client must send it. Returns the summary.
    """
    if not deprecations or not isinstance(deprecations, dict):
        return summary
    for item in summary.get("fields", ()):
        if item["name"] in deprecations:
            item["deprecation_reason"] = deprecations[item["name"]]
    for mutation in summary.get("mutations", ()):
        for item in mutation.get("inputs", ()):
            if item["name"] in deprecations and not item.get("required"):
                item["deprecation_reason"] = deprecations[item["name"]]
    return summary


def summary_problem(summary):
    """Why an announced summary's version or deprecations cannot be used (announcements are untrusted); None if fine."""
    if "api_version" in summary:
        try:
            parse_api_version(summary["api_version"])
        except ValueError as exc:
            return str(exc)
    items = [*summary.get("fields", ())]
    for mutation in summary.get("mutations", ()):
        if isinstance(mutation, dict) and isinstance(mutation.get("inputs", []), list):
            items.extend(mutation.get("inputs", []))
    for item in items:
        reason = item.get("deprecation_reason") if isinstance(item, dict) else None
        if reason is not None and (not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON
                                   or not reason.isprintable()):
            return (f"the deprecation_reason of {item.get('name')!r} must be printable text of 1 to {MAX_REASON} "
                    "characters")
        if reason is not None and item.get("required"):
            return f"the required {item.get('name')!r} cannot be deprecated (a client must send it)"
    return None


def check_service(service):
    """``manage.py check``: the declared version (nautilus.E040), the deprecations (E041), and an
    ``action_handler`` for every action, which cannot be given a major of its own (E042)."""
    errors = []
    try:
        major, _ = parse_api_version(service.api_version)
    except ValueError as exc:
        return [checks.Error(f"{type(service).__name__}.api_version: {exc}", obj=type(service), id="nautilus.E040")]
    deprecations = service.deprecations or {}
    if not isinstance(deprecations, dict):
        errors.append(checks.Error(f"{type(service).__name__}.deprecations must be a dict "
                                   '{"field": "reason"}', obj=type(service), id="nautilus.E041"))
        deprecations = {}
    # only with deprecations: a service whose summary cannot be made has its own check saying why (E011…)
    names = {item["name"] for item in service.summarize().get("fields", ())} if deprecations else set()
    for name, reason in deprecations.items():
        if name not in names:
            errors.append(checks.Error(f"{type(service).__name__}.deprecations names {name!r}, which is not one of "
                                       f"its fields ({', '.join(sorted(names)) or 'none'}).", obj=type(service),
                                       id="nautilus.E041"))
        elif not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            errors.append(checks.Error(f"{type(service).__name__}.deprecations[{name!r}] must be a reason: text of "
                                       f"1 to {MAX_REASON} characters.", obj=type(service), id="nautilus.E041"))
    if major > 1 and getattr(service.handlers, "fallback", None):
        errors.append(checks.Error(
            f"{type(service).__name__} handles every action (an action_handler without action_types), so it cannot "
            f"serve major {major} beside another: declare its action_types.", obj=type(service), id="nautilus.E042"))
    return errors
