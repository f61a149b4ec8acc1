"""The outcomes dashboard (SPEC sections 5 and 6): the latest snapshot of a scope, as tables and the
Kaplan-Meier figure, and a small status document the page polls while a recompute is pending.

A scope is "all" (coordinators only) or the code of a centre the user may read; any other scope
answers 404, as for a scope that does not exist. The page reads one snapshot, asks one question
about pending work and reads the centres' monitoring figures (three queries), so it runs a constant
number of queries whatever the cohort's size.

What the page prints of the outcome dict is built by reports/presentation.py, which the PDF uses too.
That part of the page (baseline, drug survival, remission, adverse events) is a function of the
snapshot, never changed once written, and of the language (its words and number formats): each
process renders it once per snapshot and language and keeps the HTML, so a view of the page neither
reads the result document again nor formats and draws it (the survival curve grows with the cohort).
The status line and the monitoring figures are read and rendered on every view.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from reports import access, completeness, presentation, services
from reports.models import OutcomeSnapshot


@login_required
@require_safe
def dashboard(request: HttpRequest, scope: str | None = None) -> HttpResponse:
    scope, choices = access.readable_scope(request.user, scope)
    language = translation.get_language()
    snapshot = services.latest_snapshot(scope, without_result=_rendered_ids(language))
    context = {
        "scope": scope,
        "scope_label": dict(choices)[scope],
        "choices": choices,
        "snapshot": snapshot,
        "updating": services.is_updating(scope),
        "failure": services.last_failure(scope, snapshot),
        "status_url": reverse("reports:status", args=[scope]),
        # Monitoring progress per centre (SPEC section 10), as of now rather than the snapshot.
        "monitoring": completeness.monitoring_rows(scope),
    }
    if snapshot is not None:
        context.update(_rendered_outcomes(snapshot, language))
    return render(request, "reports/dashboard.html", context)


# (snapshot id, language) -> what the page shows of the snapshot's result: the outcome part's HTML
# and the two counts the status line prints. The most recently used few, per process.
_rendered: OrderedDict[tuple[int, str], dict] = OrderedDict()
_rendered_lock = threading.Lock()
RENDERED_KEPT = 32


def _rendered_ids(language: str) -> list[int]:
    with _rendered_lock:
        return [pk for pk, lang in _rendered if lang == language]


def _rendered_outcomes(snapshot: OutcomeSnapshot, language: str) -> dict:
    key = (snapshot.pk, language)
    with _rendered_lock:
        kept = _rendered.get(key)
        if kept is not None:
            _rendered.move_to_end(key)
            return kept
    # Not kept: its result was read with it (had it been evicted since, reading it is one more query).
    outcome = presentation.outcome_context(snapshot.result)
    kept = {
        "n_patients": outcome["n_patients"],
        "excluded_incomplete": outcome["excluded_incomplete"],
        "outcomes_html": render_to_string("reports/includes/_outcomes.html", outcome),
    }
    with _rendered_lock:
        _rendered[key] = kept
        while len(_rendered) > RENDERED_KEPT:
            _rendered.popitem(last=False)
    return kept


@login_required
@require_safe
@never_cache
def status(request: HttpRequest, scope: str) -> JsonResponse:
    """What the dashboard polls: whether a recompute is pending and which snapshot is the latest."""
    scope, _choices = access.readable_scope(request.user, scope)
    # Only the version columns: the result document is not needed every two seconds.
    latest = (
        OutcomeSnapshot.objects.filter(scope=scope)
        .order_by(*services.LATEST_FIRST)
        .values("data_version", "computed_at")
        .first()
    )
    return JsonResponse(
        {
            "updating": services.is_updating(scope),
            "data_version": latest["data_version"] if latest else None,
            "computed_at": latest["computed_at"].isoformat() if latest else None,
        }
    )
