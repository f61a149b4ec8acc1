"""Locking and unlocking in the browser (SPEC section 10): coordinators lock a casebook or one of
its form rows from the casebook, and the study or a centre from the locks page; unlocking needs a
reason. Whoever may read a patient sees what locks it (cohort/views.py shows the banner)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from cohort import access, crf, locks
from cohort.models import LockKind


def _coordinator(request: HttpRequest) -> None:
    if not access.is_coordinator(request.user):
        raise PermissionDenied(_("Only coordinators lock and unlock."))


def _back(request: HttpRequest, default: str) -> str:
    back = request.POST.get("next", "")
    return back if back.startswith(default) else default


def _locked(request: HttpRequest, lock, new: bool) -> None:
    said = _("Locked: %(lock)s.") if new else _("Already locked: %(lock)s.")
    messages.success(request, said % {"lock": locks.what(lock)})


def _said(request: HttpRequest, error: ValidationError) -> None:
    messages.error(request, " ".join(error.messages) + " " + _("Nothing was changed."))


@login_required
@require_POST
def patient_lock(request: HttpRequest, study_id: str) -> HttpResponse:
    """Lock the casebook, or (`form` and `row` given) one form row of it."""
    patient = access.get_patient_for_user(request.user, study_id)
    _coordinator(request)
    back = _back(request, reverse("cohort:patient-detail", args=[patient.study_id]))
    row = None
    form = crf.FILES.get(request.POST.get("form", ""))
    if form is not None:
        row_id = request.POST.get("row", "")
        row = form.model._default_manager.filter(pk=row_id if row_id.isdigit() else 0).first()
        if row is None or (row.pk if form.model is type(patient) else row.patient_id) != patient.pk:
            messages.error(request, _("No such form row of this patient; nothing was locked."))
            return redirect(back)
    try:
        lock, new = locks.lock(by=request.user, reason=request.POST.get("reason", ""), patient=patient, row=row)
    except ValidationError as error:
        _said(request, error)
        return redirect(back)
    _locked(request, lock, new)
    return redirect(back)


@login_required
@require_POST
def patient_unlock(request: HttpRequest, study_id: str) -> HttpResponse:
    """End a lock of the casebook or of one of its form rows."""
    patient = access.get_patient_for_user(request.user, study_id)
    _coordinator(request)
    back = _back(request, f"/patients/{patient.study_id}/")
    lock_id = request.POST.get("lock", "")
    lock = locks.active().filter(patient=patient, pk=lock_id if lock_id.isdigit() else 0).first()
    if lock is None:
        messages.error(request, _("This lock has ended already."))
        return redirect(back)
    return _unlock(request, lock, back)


def _unlock(request: HttpRequest, lock, back: str) -> HttpResponse:
    try:
        locks.unlock(lock=lock, by=request.user, reason=request.POST.get("unlock_reason", ""))
    except ValidationError as error:
        _said(request, error)
    else:
        messages.success(request, _("Unlocked: %(lock)s.") % {"lock": locks.what(lock)})
    return redirect(back)


@login_required
@require_safe
def lock_list(request: HttpRequest) -> HttpResponse:
    """The active locks of the study and its centres, with the forms to lock and unlock them."""
    _coordinator(request)
    active = list(locks.active().order_by("kind", "locked_at"))
    return render(
        request,
        "cohort/locks.html",
        {
            "locks": [(lock, locks.describe(lock)) for lock in active],
            "centres": access.centres_for_user(request.user),
            "study_locked": any(lock.kind == LockKind.STUDY for lock in active),
        },
    )


@login_required
@require_POST
def lock_new(request: HttpRequest) -> HttpResponse:
    """Lock the study ("study") or a centre (its code)."""
    _coordinator(request)
    scope = request.POST.get("scope", "")
    centre = None
    if scope != "study":
        centre = access.centres_for_user(request.user).filter(code=scope).first()
        if centre is None:
            messages.error(request, _("Choose the study or a centre to lock; nothing was locked."))
            return redirect("cohort:lock-list")
    try:
        lock, new = locks.lock(by=request.user, reason=request.POST.get("reason", ""), centre=centre)
    except ValidationError as error:
        _said(request, error)
        return redirect("cohort:lock-list")
    _locked(request, lock, new)
    return redirect("cohort:lock-list")


@login_required
@require_POST
def lock_unlock(request: HttpRequest) -> HttpResponse:
    """End any active lock (the locks page lists them all)."""
    _coordinator(request)
    lock_id = request.POST.get("lock", "")
    lock = locks.active().filter(pk=lock_id if lock_id.isdigit() else 0).first()
    if lock is None:
        messages.error(request, _("This lock has ended already."))
        return redirect("cohort:lock-list")
    return _unlock(request, lock, reverse("cohort:lock-list"))
