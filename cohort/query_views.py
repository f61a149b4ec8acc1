"""Data queries in the browser (SPEC section 10): the query list (filters, CSV), one query's
conversation with what the user may do to it, and raising a query from a form's page. A nurse
answers on the form's page, with a data change in the same save if she likes (cohort/views.py),
or here without one."""

from __future__ import annotations

import csv
import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from cohort import access, crf, monitoring, queries
from cohort.models import QUERY_WAITING_FOR_SITE, QueryAction, QueryCheck, QueryMessage, QueryState
from cohort.views import form_url

PAGE_SIZE = 50
AGES = (7, 14, 30, 60)  # "open longer than N days" filter choices
NOT_CLOSED = "not_closed"  # the list's default: what still needs someone
WAITING = "waiting"  # open or re-opened: the site's turn


def form_page(query) -> str:
    """The page of the form the query is about (the row's, for a repeating form)."""
    url = form_url(query.patient, query.form)
    return f"{url}?edit={query.row_id}" if crf.form(query.form).repeating and query.row_id else url


def _filtered(request: HttpRequest):
    """The user's queries narrowed by the list's filters, and the filters as read."""
    found = access.queries_for_user(request.user)
    chosen = {name: request.GET.get(name, "") for name in ("centre", "state", "form", "age", "rule")}
    if "state" not in request.GET:
        chosen["state"] = NOT_CLOSED
    centres = access.centres_for_user(request.user)
    if chosen["centre"]:
        found = found.filter(patient__centre__code=chosen["centre"])
    state = chosen["state"]
    if state == NOT_CLOSED:
        found = found.exclude(state=QueryState.CLOSED)
    elif state == WAITING:
        found = found.filter(state__in=QUERY_WAITING_FOR_SITE)
    elif state in QueryState.values:
        found = found.filter(state=state)
    if chosen["form"] in crf.BY_KEY:
        found = found.filter(form=chosen["form"])
    if chosen["age"].isdigit():
        found = found.filter(raised_at__lt=timezone.now() - dt.timedelta(days=int(chosen["age"])))
    if chosen["rule"] == "manual":
        found = found.filter(rule="")
    elif chosen["rule"] == "system":
        found = found.exclude(rule="")
    last = QueryMessage.objects.filter(query=OuterRef("pk")).order_by("-at", "-id")
    found = found.annotate(
        last_text=Subquery(last.values("text")[:1]),
        last_template=Subquery(last.values("template")[:1]),
        last_values=Subquery(last.values("values")[:1]),
    )
    # What the list and its CSV show, as named tuples: not a query, its patient, its centre and its
    # raiser as model instances each (about 1.5 of the list's 12.5 ms of CPU).
    found = found.values_list(*LISTED, named=True)
    return found.order_by("raised_at", "id"), chosen, centres


LISTED = (
    "pk",
    "form",
    "row_id",
    "field",
    "state",
    "rule",
    "raised_at",
    "updated_at",
    "last_text",
    "last_template",
    "last_values",
    "patient__study_id",
    "patient__centre__code",
    "raised_by__username",
)


def _rows(found) -> list[dict]:
    now = timezone.now()
    # The labels of the states and checks in the active language, once per list rather than per
    # row (as get_FOO_display would: it hashes every choice's label, translating it, each call);
    # the URLs reversed once per list, each row's values put in their places (_UrlOf); what a
    # query is about once per form and field, and each day's date.
    states, checks = _labels(QueryState.choices), _labels(QueryCheck.choices)
    query_url, patient_url = _UrlOf("cohort:query", _PK), _UrlOf("cohort:patient-detail", _STUDY_ID)
    form_urls, wheres, days = {}, {}, {}

    def raised_on(query) -> str:  # as the template's |date filter prints it, once per day
        day = timezone.localtime(query.raised_at).date()
        if day not in days:
            days[day] = formats.date_format(day)
        return days[day]

    def where(query) -> str:
        if (query.form, query.field) not in wheres:
            wheres[query.form, query.field] = queries.where(query.form, query.field)
        return wheres[query.form, query.field]

    def form_page_of(query) -> str:
        if query.form not in form_urls:
            form_urls[query.form] = _UrlOf(
                "cohort:rows" if crf.form(query.form).repeating else "cohort:form", _STUDY_ID, query.form
            )
        url = form_urls[query.form](query.patient__study_id)
        return f"{url}?edit={query.row_id}" if crf.form(query.form).repeating and query.row_id else url

    return [
        {
            "query": query,
            "query_url": query_url(query.pk),
            "patient_url": patient_url(query.patient__study_id),
            "state": states.get(query.state, query.state),
            "where": where(query),
            "url": form_page_of(query),
            "raised_on": raised_on(query),
            "age": (now - query.raised_at).days,
            "by": query.raised_by__username
            if query.raised_by__username is not None
            else checks.get(query.rule, query.rule),
            "last": queries.message_text(query.last_text or "", query.last_template, query.last_values),
        }
        for query in found
    ]


def _labels(choices) -> dict[str, str]:
    return {value: str(label) for value, label in choices}


# Stand-ins for a query's id and a patient's study ID (which their converters pass as they are and
# reverse() does not quote): no URL holds them otherwise.
_PK = 9876543210
_STUDY_ID = "ZZZZZZZZZZ-99999"


class _UrlOf:
    """A URL reversed once with a stand-in for one argument; called with that argument's value, the
    URL reverse() gives for it."""

    def __init__(self, name: str, stand_in, *rest) -> None:
        self.before, self.after = reverse(name, args=[stand_in, *rest]).split(str(stand_in))

    def __call__(self, value) -> str:
        return f"{self.before}{value}{self.after}"


@login_required
@require_safe
def query_list(request: HttpRequest) -> HttpResponse:
    """Every query the user may see, oldest first; coordinators across centres."""
    found, chosen, centres = _filtered(request)
    if request.GET.get("format") == "csv":
        return _csv(_rows(found))
    if chosen == {**dict.fromkeys(chosen, ""), "state": NOT_CLOSED}:
        # The default list (every query not closed): its total is the centres' tally, not a count
        # of their queries; its page an index scan (Query.Meta.indexes), not a sort of them all.
        count = monitoring.tallied(access.readable_centre_ids(request.user), "queries not closed")
        paginator = monitoring.TalliedPaginator(found, PAGE_SIZE, count=count)
    else:
        paginator = Paginator(found, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "cohort/queries.html",
        {
            "rows": _rows(page),
            "page": page,
            "chosen": chosen,
            "centres": centres,
            "states": [(NOT_CLOSED, _("not closed")), (WAITING, _("waiting for the site")), *QueryState.choices],
            "forms": [(form.key, form.title) for form in crf.FORMS],
            "ages": AGES,
            "rules": [("manual", _("raised by a coordinator")), ("system", _("automatic checks"))],
            "params": params.urlencode(),
        },
    )


CSV_COLUMNS = (
    "query",
    "study_id",
    "centre",
    "form",
    "row",
    "field",
    "state",
    "raised_by",
    "raised_at_utc",
    "updated_at_utc",
    "age_days",
    "last_message",
)


def _csv(rows: list[dict]) -> HttpResponse:
    """The filtered list as CSV for the monitor's report: codes, not labels, and UTC times."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="queries.csv"'
    writer = csv.writer(response, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        query = row["query"]
        writer.writerow(
            (
                query.pk,
                query.patient__study_id,
                query.patient__centre__code,
                query.form,
                query.row_id or "",
                query.field,
                query.state,
                query.raised_by__username if query.raised_by__username is not None else f"data_checks:{query.rule}",
                _utc(query.raised_at),
                _utc(query.updated_at),
                row["age"],
                query.last_text or "",
            )
        )
    return response


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _back(request: HttpRequest, query) -> str:
    """Where to go after acting: the page the user came from (this patient's pages or the query
    list), else the query's own page."""
    back = request.POST.get("next", "") or request.GET.get("next", "")
    if back.startswith((f"/patients/{query.patient.study_id}/", reverse("cohort:query-list"))):
        return back
    return reverse("cohort:query", args=[query.pk])


@login_required
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A query's conversation; POST: answer (the site), close or re-open (coordinators)."""
    query = access.get_query_for_user(request.user, pk)
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in queries.TRANSITIONS or not queries.allowed(request.user, query, action):
            raise PermissionDenied(_("Your role does not do this to a query."))
        if not queries.may(request.user, query, action):  # someone acted first
            said = _("This query is %(state)s now; nothing was changed.")
            messages.error(request, said % {"state": query.get_state_display()})
            return redirect(_back(request, query))
        text = request.POST.get("text", "") or request.POST.get(f"answer_{query.pk}", "")
        try:
            queries.act(query=query, action=action, text=text, by=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages) + " " + _("Nothing was changed."))
        except PermissionDenied:  # acted on between the check and the row lock
            messages.error(request, _("Someone else acted on this query first; nothing was changed."))
        else:
            said = _("Query #%(id)s: %(action)s.")
            messages.success(request, said % {"id": query.pk, "action": QueryAction(action).label})
        return redirect(_back(request, query))
    actions = [action for action in queries.TRANSITIONS if queries.may(request.user, query, action)]
    return render(
        request,
        "cohort/query_detail.html",
        {
            "query": query,
            "patient": query.patient,
            "where": queries.where(query.form, query.field),
            "url": form_page(query),
            "conversation": list(query.messages.select_related("author")),
            "actions": [(action, queries.ACTION_VERBS[action]) for action in actions],
        },
    )


@login_required
@require_POST
def query_raise(request: HttpRequest, study_id: str) -> HttpResponse:
    """A coordinator raises a query on a field of a form row, or on the form as a whole."""
    patient = access.get_patient_for_user(request.user, study_id)
    if not access.is_coordinator(request.user):
        raise PermissionDenied(_("Only coordinators raise data queries."))
    back = request.POST.get("next", "")
    if not back.startswith(f"/patients/{patient.study_id}/"):
        back = reverse("cohort:patient-detail", args=[patient.study_id])
    row = request.POST.get("row", "")
    try:
        query = queries.raise_query(
            patient=patient,
            form_key=request.POST.get("form", ""),
            row_id=int(row) if row.isdigit() else None,
            field=request.POST.get("field", ""),
            text=request.POST.get("text", ""),
            by=request.user,
            rule=QueryCheck.MANUAL,
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages) + " " + _("No query was raised."))
    else:
        messages.success(request, _("Query #%(id)s raised.") % {"id": query.pk})
    return redirect(back)
