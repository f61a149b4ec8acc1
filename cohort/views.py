"""Pages of the data entry: the patient list, enrolment, the casebook and every form.

Every view finds its patient through cohort.access (404 for another centre's patient, 403 for a
read-only role writing); writes go through cohort.services. No view changes data on GET.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST, require_safe

from cohort import (
    access,
    casebook,
    crf,
    display,
    history,
    listing,
    locks,
    monitoring,
    queries,
    sdv,
    services,
    signatures,
    validators,
)
from cohort.choices import FormStatus
from cohort.forms import PatientForm, form_class
from cohort.models import Lock, LockKind, Patient, QueryAction, QueryState

PAGE_SIZE = 25


def form_url(patient: Patient, key: str) -> str:
    return reverse("cohort:rows" if crf.form(key).repeating else "cohort:form", args=[patient.study_id, key])


@dataclass
class ListRow:
    """One line of the patient list."""

    patient: Patient
    progress: casebook.Progress
    lock: Lock | None
    verified: tuple[int, int]  # (forms verified, forms with rows)
    open_queries: int
    signed: bool  # a valid signature whose hash matches the casebook now
    html: str = ""  # the row's <tr>, made by _row_html


def _row_words() -> dict[str, str]:
    """The rows' words, translated once per page (escaped, as the template showed them)."""
    return {
        "next_visit": escape(_("Next visit")),
        "overdue": escape(_("Overdue")),
        "flags": escape(_("Flags")),
        "queries": escape(_("Queries")),
        "complete": escape(_("Forms complete")),
        "verified": escape(_("Verified")),
        "signed": escape(_("Signed")),
        "locked": escape(_("locked")),
        "signed_badge": escape(_("signed")),
    }


_VISIT_BADGE = {"overdue": "text-bg-danger", "due": "text-bg-warning"}


def _shown(value) -> str:
    """A value as `{{ value }}` shows it: localized (dates in the language's format), escaped. An
    integer below a thousand is its digits in every language (no grouping): most of a row's."""
    if type(value) is int and -1000 < value < 1000:
        return str(value)
    return escape(formats.localize(value))


def _shown_date(value) -> str:
    """A date as `{{ value|date }}` shows it."""
    return "" if value in (None, "") else escape(formats.date_format(value))


def _width(complete: int, total: int) -> str:
    """`{% widthratio complete total 100 %}`."""
    try:
        return str(round(float(complete) / float(total) * 100))
    except ZeroDivisionError:
        return "0"


def _row_html(row: ListRow, words: dict[str, str]) -> str:
    """One row of the patient list, the HTML the per-row template made (every value escaped as it
    escaped them): 25 rows of a dozen tags cost a third of the page's CPU through the template."""
    patient, progress, verified = row.patient, row.progress, row.verified
    url = escape(reverse("cohort:patient-detail", args=[patient.study_id]))
    study_id = escape(patient.study_id)
    lock = (
        f' <span class="badge text-bg-secondary" data-locked="{escape(row.lock.kind)}">{words["locked"]}</span>'
        if row.lock
        else ""
    )
    visit = progress.next_visit
    if visit:
        next_visit = (
            f'\n        <span class="badge {_VISIT_BADGE.get(visit.state, "text-bg-light")}">'
            f"{escape(visit.label)}</span>"
            f'\n        <span class="small">{_shown_date(visit.window_start)} – {_shown_date(visit.window_end)}</span>'
            "\n      "
        )
    else:
        next_visit = '<span class="text-muted">–</span>'
    overdue = (
        f'<span class="badge text-bg-danger">{_shown(progress.overdue)}</span>'
        if progress.overdue
        else '<span class="text-muted">0</span>'
    )
    flags = (
        f'<span class="badge text-bg-warning">{_shown(progress.flags)}</span>'
        if progress.flags
        else '<span class="text-muted">0</span>'
    )
    n = row.open_queries
    if n:
        count = ngettext("%(n)s open", "%(n)s open", n) % {"n": _shown(n)}
        open_queries = f'<a class="badge text-bg-danger text-decoration-none" href="{url}">{count}</a>'
    else:
        open_queries = '<span class="text-muted">0</span>'
    complete, total = _shown(progress.complete), _shown(progress.total)
    verified_text = f"{_shown(verified[0])}/{_shown(verified[1])}"
    signed = (
        f'<span class="badge text-bg-success">{words["signed_badge"]}</span>'
        if row.signed
        else '<span class="text-muted">–</span>'
    )
    return (
        "\n    <tr>"
        f'\n      <td class="text-nowrap"><a href="{url}" class="fw-semibold">{study_id}</a>{lock}</td>'
        f'\n      <td class="d-none d-lg-table-cell">{_shown(patient.centre.code)}</td>'
        f'\n      <td class="d-none d-lg-table-cell">{_shown(patient.enrolment_date)}</td>'
        f'\n      <td class="next-visit" data-label="{words["next_visit"]}">{next_visit}</td>'
        f'\n      <td data-label="{words["overdue"]}">{overdue}</td>'
        f'\n      <td data-label="{words["flags"]}">{flags}</td>'
        f'\n      <td data-label="{words["queries"]}" data-open-queries="{_shown(n)}">{open_queries}</td>'
        f'\n      <td data-label="{words["complete"]}">'
        f'\n        <div class="progress" role="progressbar" aria-label="{words["complete"]}"'
        f' aria-valuenow="{complete}" aria-valuemin="0" aria-valuemax="{total}" style="height: .5rem; max-width: 8rem">'
        f'\n          <div class="progress-bar bg-success"'
        f' style="width: {_width(progress.complete, progress.total)}%"></div>'
        "\n        </div>"
        f'\n        <span class="small text-muted">{complete}/{total}</span>'
        "\n      </td>"
        f'\n      <td class="small" data-label="{words["verified"]}" data-sdv-progress="{verified_text}">'
        f"{verified_text}</td>"
        f'\n      <td data-label="{words["signed"]}" data-signed="{"yes" if row.signed else "no"}">{signed}</td>'
        "\n    </tr>"
        "\n  "
    )


@login_required
@require_safe
def patient_list(request: HttpRequest) -> HttpResponse:
    """The patients the user may see, searched by study ID and narrowed by the monitoring filters
    (in the database, so the pages and the count stay right)."""
    query = request.GET.get("q", "").strip().upper()
    chosen = [name for name in request.GET.getlist("filter") if name in monitoring.FILTERS]
    patients = monitoring.filtered(access.patients_for_user(request.user), chosen).order_by("study_id")
    if query:
        patients = patients.filter(study_id__contains=query)
    # The page is chosen among the patients' ids (an index-only scan, Patient.Meta.indexes), then
    # only its patients are read with their forms: sorting and skipping whole joined rows grew with
    # the cohort (a page deep in 100,000 patients cost 130 ms of SQL).
    # The whole list (no search, no filter) is counted and paged from the centres' tallies, a page
    # read within the centres it falls in (monitoring.CentrePaginator), not by counting and skipping
    # every patient (an entry per patient, the costs of the page that grew with the cohort).
    # A filter's count from the set of ids it keeps or leaves out (monitoring.filtered_count).
    ids = patients.values_list("pk", flat=True)
    centre_ids = access.readable_centre_ids(request.user)
    if not query and not chosen:
        paginator = monitoring.CentrePaginator(PAGE_SIZE, centre_ids)
    else:
        count = None if query else monitoring.filtered_count(centre_ids, chosen)
        paginator = (
            Paginator(ids, PAGE_SIZE) if count is None else monitoring.TalliedPaginator(ids, PAGE_SIZE, count=count)
        )
    page = paginator.get_page(request.GET.get("page"))
    shown = list(
        Patient.objects.filter(pk__in=page.object_list)
        .select_related("centre")
        .annotate(summed=models.Subquery(listing.current().values("summary")))
        .order_by("centre__code", "study_id")
    )
    # Each casebook as the data checks summed it up (cohort.listing); those changed since, summed
    # up from their rows now (two queries for the page, only then).
    signed = signatures.valid_of_patients(shown)  # one query for the page
    stale = [patient for patient in shown if patient.summed is None]
    if stale:
        marks = sdv.marks_of_patients(stale)
        for record in services.records_of(stale):
            pk = record.patient.pk
            record.patient.summed = listing.summary(record, marks[pk], hashed=pk in signed)
    today = timezone.localdate()
    page_locks = locks.active_for(shown)  # one query for the page
    open_counts = queries.open_counts(shown)  # one query for the page
    words = _row_words()
    rows = []
    for patient in shown:
        summed = listing.row(patient.summed, today)
        row = ListRow(
            patient=patient,
            progress=summed.progress,
            lock=locks.covering(patient, among=page_locks),
            verified=summed.verified,
            open_queries=open_counts[patient.pk],
            signed=signatures.signs(signed.get(patient.pk), summed.data_hash),
        )
        row.html = mark_safe(_row_html(row, words))  # every value in it escaped by _row_html
        rows.append(row)
    return render(
        request,
        "cohort/patient_list.html",
        {
            "page": page,
            "rows": rows,
            "query": query,
            "filters": [(name, label, name in chosen) for name, (label, _keep) in monitoring.FILTERS.items()],
            "filtering": bool(chosen),
            "can_enrol": bool(access.writable_centre_ids(request.user)),
            "coordinator": access.is_coordinator(request.user),
        },
    )


class EnrolForm(PatientForm):
    # Lazy: a class attribute is made once, at start-up, in whichever language was active then.
    centre = forms.ModelChoiceField(queryset=None, label=gettext_lazy("Centre"), empty_label=None)

    class Meta(PatientForm.Meta):
        pass

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Only centres where this user is a nurse: a forged centre id fails as an invalid choice.
        self.fields["centre"].queryset = access.centres_for_user(user, write=True)
        self.helper.layout.insert(0, "centre")


@login_required
def patient_enrol(request: HttpRequest) -> HttpResponse:
    if not access.writable_centre_ids(request.user):
        raise PermissionDenied(_("Only research nurses enrol patients."))
    form = EnrolForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = {name: value for name, value in form.cleaned_data.items() if name in PatientForm.Meta.fields}
        try:
            patient = services.patient_enrol(centre=form.cleaned_data["centre"], by=request.user, **data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Patient %(id)s enrolled.") % {"id": patient.study_id})
            return redirect("cohort:patient-detail", patient.study_id)
    return render(request, "cohort/patient_enrol.html", {"form": form})


@login_required
@require_safe
def patient_detail(request: HttpRequest, study_id: str) -> HttpResponse:
    """The casebook: forms x visits with their status, the visit schedule and recent changes."""
    patient = access.get_patient_for_user(request.user, study_id)
    record = services.read_record(patient)
    cells = casebook.form_cells(record)
    marks = sdv.marks_of(record)
    open_queries = queries.not_closed(patient)
    per_form = queries.by_form(open_queries)
    for cell in cells:
        cell.url = form_url(patient, cell.key)
        cell.queries = per_form.get(cell.key)
        cell.sdv = sdv.state(crf.form(cell.key).rows(record), marks)
        cell.sdv_label = sdv.LABELS.get(cell.sdv, "")
    grid = [(column, label, [cell for cell in cells if cell.column == column]) for column, label in casebook.COLUMNS]
    trail = services.patient_audit_trail(patient)
    # The casebook's recent changes are of its data; the full history (and the PDF, and the
    # audit export) also has the monitoring: queries, verification, signatures.
    recent = history.readable([entry for entry in reversed(trail) if entry["file"]][:15])
    covering = locks.all_covering(patient)
    return render(
        request,
        "cohort/patient_detail.html",
        {
            "patient": patient,
            "signing": signatures.panel(record, queries=open_queries, user=request.user),
            **_lock_context(request, covering, kind=LockKind.PATIENT),
            "grid": grid,
            "schedule": casebook.visit_schedule(record, timezone.localdate()),
            "history": recent,
            "history_html": history.list_html(recent),
            "history_count": len(trail),
            "can_write": access.can_write(request.user, patient) and not covering,
            "flags": [flag for cell in cells for flag in cell.flags],
            "queries": [(query, queries.where(query.form, query.field)) for query in open_queries],
        },
    )


@login_required
@require_safe
def patient_history(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = access.get_patient_for_user(request.user, study_id)
    trail = history.readable(list(reversed(services.patient_audit_trail(patient))))
    context = {"patient": patient, "history": trail, "history_html": history.list_html(trail)}
    return render(request, "cohort/patient_history.html", context)


@login_required
@require_POST
def patient_delete(request: HttpRequest, study_id: str) -> HttpResponse:
    """Soft delete (SPEC section 4): the patient leaves every list and analysis; the audit stays."""
    patient = access.get_patient_for_user(request.user, study_id, write=True)
    try:
        services.patient_soft_delete(patient=patient, by=request.user, reason=request.POST.get("reason_for_change", ""))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("cohort:patient-detail", patient.study_id)
    messages.success(
        request, _("Patient %(id)s removed; the record and its audit trail are kept.") % {"id": patient.study_id}
    )
    return redirect("cohort:patient-list")


@login_required
@require_POST
def flag_confirm(request: HttpRequest, study_id: str) -> HttpResponse:
    """A flagged value was checked and stands: the flag stops counting (until the value changes)."""
    patient = access.get_patient_for_user(request.user, study_id)
    if not access.can_confirm_flags(request.user, patient):
        raise PermissionDenied(_("Only the centre's nurses and the coordinators confirm flags."))
    back = request.POST.get("next", "")
    if not back.startswith(f"/patients/{patient.study_id}/"):  # only this patient's pages
        back = reverse("cohort:patient-detail", args=[patient.study_id])
    row_id = request.POST.get("row", "")
    try:
        services.flag_confirm(
            patient=patient,
            form=request.POST.get("form", ""),
            row_id=int(row_id) if row_id.isdigit() else 0,
            field=request.POST.get("field", ""),
            by=request.user,
            comment=request.POST.get("comment", "").strip(),
        )
    except services.NothingToConfirm:
        messages.error(request, _("This flag is no longer raised (the value was changed or confirmed already)."))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Flag confirmed: the value was checked and stands."))
    return redirect(back)


def _answers(request, patient, key: str, row) -> list[tuple]:
    """The nurse's replies, typed on the form's page, to the queries on this form (row) that wait
    for the site: [(query, reply)]. A POST without a reply field has none to read."""
    if not any(name.startswith("answer_") for name in request.POST):
        return []
    waiting = queries.waiting_on(patient, key, row.pk) if access.can_write(request.user, patient) else []
    replies = [(query, request.POST.get(f"answer_{query.pk}", "").strip()) for query in waiting]
    return [(query, reply) for query, reply in replies if reply]


def _save(request, form, patient, row, key: str) -> HttpResponse | None:
    """Run the save service for a bound, valid form; None means: show the form again.

    Replies to the form's queries are saved with it, in one transaction: the queries are answered
    and a data change made in answer cites them in its reason for change. A reply with nothing
    changed answers the queries and writes no data."""
    answers = _answers(request, patient, key, row)
    changed = row.pk is None or bool(set(form.changed_data) - {"reason_for_change", "version"})
    reason = form.cleaned_data.get("reason_for_change", "")
    if answers and changed:
        reason = queries.reason_citing([query for query, _reply in answers], answers[0][1], reason)
    try:
        # Only replies need a transaction of their own around the save's (which has one).
        with transaction.atomic() if answers else contextlib.nullcontext():
            # The answers first: one request is one audit context, whose reason is the last one
            # given, and the data change's (citing the queries) is the one to keep.
            for query, reply in answers:
                queries.act(query=query, action=QueryAction.ANSWER, text=reply, by=request.user)
            if changed or not answers:
                services.crf_row_save(
                    row=row, by=request.user, expected_version=form.cleaned_data.get("version"), reason=reason
                )
    except PermissionDenied:  # a query was closed or answered by someone else meanwhile
        form.add_error(None, _("A query you answered changed meanwhile. Nothing of yours was saved yet."))
        return None
    except services.EditConflict as conflict:
        form.conflict = conflict.changes
        form.add_error(None, _("Someone else saved this form after you opened it. Nothing of yours was saved yet."))
        return None
    except ValidationError as error:
        _add_errors(form, error, patient)
        return None
    if changed or not answers:
        messages.success(request, _("%(form)s saved.") % {"form": crf.form(key).title})
    if answers:
        cited = ", ".join(queries.cite(query) for query, _reply in answers)
        messages.success(request, _("Answered: %(queries)s.") % {"queries": cited})
    if "next" in request.POST:
        following = crf.next_form(key)
        if following:
            return redirect(form_url(patient, following.key))
    if crf.form(key).repeating:
        return redirect("cohort:rows", patient.study_id, key)
    return redirect("cohort:patient-detail", patient.study_id)


def _add_errors(form, error: ValidationError, patient) -> None:
    """Each error once, beside the field it is about. Another form's problem (a date this change
    puts out of order) is put beside this form's date that caused it, naming and linking that form,
    its field and its value; what belongs to no field stays at the top of the form."""
    if not hasattr(error, "error_dict"):  # about the record, not a field (a lock, say)
        form.add_error(None, error)
        return
    problems = getattr(error, "problems", [])
    for field, messages_ in error.message_dict.items():
        if field == NON_FIELD_ERRORS and problems:
            continue  # the other forms' problems: placed below, each with its link
        form.add_error(field if field in form.fields else None, messages_)
    for problem in problems:
        if problem.row is not error.row:
            form.add_error(_beside(form, problem), _elsewhere(patient, problem))


def _beside(form, problem: validators.Problem) -> str | None:
    """The field of this form that another form's date rule compares with: its one date field."""
    other = display.field_by_attname(type(problem.row), problem.field)
    dates = [name for name, field in form.fields.items() if isinstance(field, forms.DateField)]
    return dates[0] if isinstance(other, models.DateField) and len(dates) == 1 else None


def _elsewhere(patient, problem: validators.Problem) -> str:
    """Another form's problem as a nurse reads it: the form (a link to it), the field's label, its
    value and what is allowed."""
    url = form_url(patient, crf.form_of(problem.row).key)
    if crf.form_of(problem.row).repeating and problem.row.pk:
        url = f"{url}?edit={problem.row.pk}"
    return format_html(
        '<a href="{}">{}</a>: {} ({}) {}', url, problem.where, problem.label, problem.value, problem.message
    )


def _report_rules(form, patient) -> None:
    """A form with unreadable or missing values is not saved, but its rules are still checked on
    what could be read (the rest left out), so one save reports every problem at once."""
    failed = set(form.errors)
    row = form.instance
    record = services.patient_record(patient, confirmations=False).with_row(row)
    problems = validators.check(record, [row], skip=lambda _row: failed, cross_form=False)
    problems += [problem for problem in validators.cross_form_problems(record) if problem.row is row]
    for problem in problems:
        if problem.field not in failed:
            form.add_error(problem.field if problem.field in form.fields else None, problem.message)
    if form.asks_reason and not form.data.get("reason_for_change", "").strip() and "reason_for_change" not in failed:
        form.add_error("reason_for_change", _(services.REASON_REQUIRED))


@login_required
def form_edit(request: HttpRequest, study_id: str, key: str) -> HttpResponse:
    """A one-per-patient form (enrolment, re-induction, follow-up) or the assessment of a visit."""
    write = request.method == "POST"
    case_form = crf.form(key)
    patient, row = _single_row(request, study_id, case_form, write=write)
    form = form_class(case_form)(request.POST or None, instance=row)
    if write and form.is_valid():
        response = _save(request, form, patient, form.instance, key)
        if response:
            return response
    elif write and form.is_bound:
        _report_rules(form, patient)
    return _render_form(request, patient, key, form)


def _single_row(request, study_id: str, case_form: crf.CaseForm, *, write: bool) -> tuple[Patient, models.Model]:
    """The patient and its row of a one-row form: a stored row comes with its patient in one query
    (cohort.access); else the patient, and a new row to fill in."""
    if case_form.model is not Patient:
        row = access.get_row_for_user(request.user, study_id, case_form.model, write=write, **case_form.row_match)
        if row is not None:
            return row.patient, row
    patient = access.get_patient_for_user(request.user, study_id, write=write)
    if case_form.model is Patient:
        return patient, patient
    return patient, case_form.model(patient=patient, **case_form.row_match)


def _lock_context(request, covering: list, *, kind: str, row=None) -> dict:
    """What the page says of the locks covering it, and the coordinator's lock or unlock of its own
    target (the casebook; a form row): the lock of that target, if one is active."""
    own = next((lock for lock in covering if lock.kind == kind and (row is None or lock.row_id == row.pk)), None)
    return {
        "lock": covering[0] if covering else None,
        "lock_text": locks.describe(covering[0]) if covering else "",
        "own_lock": own,
        "can_lock": access.is_coordinator(request.user),
    }


def _render_form(request, patient, key, form, rows=None, editing=None, record=None) -> HttpResponse:
    instance = form.instance
    lockable = instance if rows is None and instance.pk else None  # a form with one stored row
    covering = locks.all_covering(patient, lockable)
    can_write = access.can_write(request.user, patient) and not covering
    if not can_write:
        for field in form.fields.values():
            field.disabled = True
    record = record or services.read_record(patient)
    form_queries = queries.conversations(patient, key)
    for query in form_queries:
        query.label = queries.field_label(crf.form(key), query.field)
    row_id = instance.pk if rows is None else editing
    _show_questions(form, queries.on_row(form_queries, row_id))
    # A repeating form's page shows the flags of all its rows; a single form's, its own.
    shown = [item for item, _flag in rows] if rows is not None else [instance]
    flags = [flag for flag in validators.soft_flags(record) if any(_same_row(flag.row, row) for row in shown)]
    cell = next(cell for cell in casebook.form_cells(record) if cell.key == key)
    return render(
        request,
        "cohort/crf_form.html",
        {
            "patient": patient,
            "key": key,
            "title": crf.form(key).title,
            "form": form,
            "rows": rows,
            "editing": editing,
            "can_write": can_write,
            **_lock_context(request, covering, kind=LockKind.ROW, row=lockable),
            "lock_row": lockable,
            "lock_form": crf.file_of(type(instance)).name,
            "flags": flags,
            "cell": cell,
            "suggest_complete": cell.status == FormStatus.INCOMPLETE and not form.errors,
            "can_confirm": access.can_confirm_flags(request.user, patient),
            "next_form": crf.next_form(key),
            "reinduction_date": record.reinduction_date,
            "queries": form_queries,
            "query_row": row_id,
            "can_answer": can_write,
            "can_raise": access.is_coordinator(request.user),
            "query_fields": queries.field_choices(crf.form(key)),
        },
    )


def _show_questions(form, found) -> None:
    """Each open question beside the field it is about (under its help text), so the nurse reads
    it where she corrects the value."""
    for query in found:
        if query.state == QueryState.CLOSED or query.field not in form.fields:
            continue
        field = form.fields[query.field]
        first = query.messages.all()[0] if query.messages.all() else None
        question = queries.message_text(first.text, first.template, first.values) if first else ""
        field.help_text = format_html(
            '{}<span class="d-block query-note mt-1" data-query="{}">{} #{} ({}): {}</span>',
            field.help_text,
            query.pk,
            _("Query"),
            query.pk,
            query.get_state_display(),
            question,
        )


def _same_row(a, b) -> bool:
    """The same stored row: ids repeat across the forms' tables, so the model must match too."""
    return a.pk is not None and type(a) is type(b) and a.pk == b.pk


@login_required
def rows(request: HttpRequest, study_id: str, key: str) -> HttpResponse:
    """A repeating form: its rows, with one being added (or edited, ?edit=<id>) in place."""
    write = request.method == "POST"
    patient = access.get_patient_for_user(request.user, study_id, write=write)
    model = crf.form(key).model
    editing = request.GET.get("edit") or request.POST.get("row")
    row = model(patient=patient)
    if editing:
        row = model.objects.filter(patient=patient, pk=editing if str(editing).isdigit() else 0).first()
        if row is None:
            raise Http404("No such row.")
    form = form_class(crf.form(key))(request.POST or None, instance=row)
    following = crf.next_form(key)
    if write and "next" in request.POST and following and not editing and not _typed(form):
        return redirect(form_url(patient, following.key))  # nothing typed in the add-row: just move on
    if write and form.is_valid():
        response = _save(request, form, patient, form.instance, key)
        if response:
            return response
    elif write and form.is_bound:
        _report_rules(form, patient)
    record = services.read_record(patient)
    flags = validators.soft_flags(record)
    stored = crf.form(key).rows(record)
    listed = [(item, next((flag.message for flag in flags if _same_row(flag.row, item)), None)) for item in stored]
    return _render_form(request, patient, key, form, rows=listed, editing=row.pk, record=record)


def _typed(form) -> bool:
    """Whether anything was typed in a form (its status and bookkeeping fields aside)."""
    return bool(set(form.changed_data) - {"form_status", "version", "reason_for_change"})


@login_required
@require_POST
def row_delete(request: HttpRequest, study_id: str, key: str, pk: int) -> HttpResponse:
    patient = access.get_patient_for_user(request.user, study_id, write=True)
    model = crf.form(key).model
    row = model.objects.filter(patient=patient, pk=pk).first()
    if row is None:
        raise Http404("No such row.")
    version = request.POST.get("version", "")
    try:
        services.crf_row_delete(
            row=row,
            by=request.user,
            expected_version=int(version) if version.isdigit() else None,
            reason=request.POST.get("reason_for_change", ""),
        )
    except services.EditConflict:
        messages.error(request, _("Someone else changed this row after you opened the page; nothing was removed."))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Row removed."))
    return redirect("cohort:rows", patient.study_id, key)


@login_required
@require_POST
def verify(request: HttpRequest, study_id: str) -> HttpResponse:
    """Source data verification: mark one form (`key`) or every form of a casebook column (`column`,
    e.g. a visit) verified against the source. Coordinators only; it changes no study data."""
    patient = access.get_patient_for_user(request.user, study_id)
    if not access.is_coordinator(request.user):
        raise PermissionDenied(_("Only coordinators mark source data verification."))
    key, column = request.POST.get("key", ""), request.POST.get("column", "")
    forms_ = [form for form in crf.FORMS if form.key == key or (column and form.column == column)]
    record = services.patient_record(
        services.with_forms(Patient.objects.filter(pk=patient.pk)).get(), confirmations=False
    )
    count = sdv.verify(record=record, forms=forms_, by=request.user) if forms_ else 0
    if count:
        messages.success(request, _("%(count)s form row(s) marked verified against the source.") % {"count": count})
    else:
        messages.error(request, _("Nothing to verify: those forms have no rows yet."))
    return redirect("cohort:patient-detail", patient.study_id)
