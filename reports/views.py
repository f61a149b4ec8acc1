"""The outcomes dashboard (SPEC sections 5 and 6): the latest snapshot of a scope, as tables and the
Kaplan-Meier figure, and a small status document the page polls while a recompute is pending.

A scope is "all" (coordinators only) or the code of a centre the user may read; any other scope
answers 404, as for a scope that does not exist. The page reads one snapshot, asks one question
about pending work and reads the centres' monitoring figures (three queries), so it runs a constant
number of queries whatever the cohort's size.

What the page prints of the outcome dict is built by reports/presentation.py, which the PDF uses too.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from reports import access, completeness, presentation, services
from reports.models import OutcomeSnapshot


@login_required
@require_safe
def dashboard(request: HttpRequest, scope: str | None = None) -> HttpResponse:
    scope, choices = access.readable_scope(request.user, scope)
    snapshot = services.latest_snapshot(scope)
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
        context.update(presentation.outcome_context(snapshot.result))
    return render(request, "reports/dashboard.html", context)


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
