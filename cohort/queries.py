"""Data queries (SPEC section 10): a coordinator questions a value, the site answers, the
coordinator closes or re-opens; the automatic checks (cohort/data_checks.py) raise and close their
own through the same functions.

A query's conversation is its messages, append-only (a database trigger refuses any update or
delete of one); every state change is a message and an audited update of the query, with who,
when and why in the audit trail. Who may do what is `may(user, query, action)`; which queries a
user sees at all is cohort.access (another centre's query answers 404).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cohort import access, crf
from cohort.audit import audit_context
from cohort.choices import Visit
from cohort.models import QUERY_WAITING_FOR_SITE, Patient, Query, QueryAction, QueryCheck, QueryMessage, QueryState

MESSAGE_MAX_LENGTH = 2000


@dataclass(frozen=True)
class Wording:
    """An automatic check's message as its wording (a msgid with %(name)s places) and its values,
    so that each reader sees it in their own language (`message_text`). Values named visit or
    window are visit codes, form a casebook form's key, why a msgid of its own; the rest are shown
    as they are."""

    template: str
    values: dict

    def text(self) -> str:
        """The message in English, as stored in `QueryMessage.text` (the audit trail, the CSV)."""
        with translation.override("en"):
            return render(self.template, self.values)


def _shown(name: str, value):
    if name in ("visit", "window"):
        return str(Visit(value).label)
    if name == "form":
        return str(crf.BY_KEY[value].title) if value in crf.BY_KEY else value
    if name == "why":
        return _(value)
    if name == "end":  # an ISO date: in the language's one style
        return formats.date_format(dt.date.fromisoformat(value))
    if name == "row" and isinstance(value, dict):  # row_names: the row as each language names it
        return value.get(translation.get_language(), value.get("en", ""))
    return value


def row_names(row: models.Model) -> dict[str, str]:
    """A form row's name in every language of the site ("1 Mar 2022 infection", "1 mrt 2022
    infectie"), for a wording: the row's name holds dates and labels that a stored text cannot
    translate later."""
    names = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            names[code] = str(row)
    return names


def render(template: str, values: dict) -> str:
    """A wording in the active language."""
    return _(template) % {name: _shown(name, value) for name, value in values.items()}


def message_text(text: str, template: str = "", values: dict | None = None) -> str:
    """A message as the reader sees it: an automatic one in their language, else as written."""
    if not template:
        return text
    try:
        return render(template, values or {})
    except (KeyError, ValueError, TypeError):  # a wording changed since: the stored English
        return text


def _message(text: str | Wording) -> dict:
    """The fields of a new message for `text`: a person's text, or an automatic wording."""
    if isinstance(text, Wording):
        return {"text": _text(text.text()), "template": text.template, "values": text.values}
    return {"text": _text(text)}


# The state each action leads to, and the states it may start from.
TRANSITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    QueryAction.ANSWER: (QueryState.ANSWERED, (QueryState.OPEN, QueryState.REOPENED, QueryState.ANSWERED)),
    QueryAction.CLOSE: (QueryState.CLOSED, (QueryState.OPEN, QueryState.REOPENED, QueryState.ANSWERED)),
    QueryAction.REOPEN: (QueryState.REOPENED, (QueryState.ANSWERED, QueryState.CLOSED)),
}
ACTION_VERBS = {
    QueryAction.ANSWER: gettext_lazy("Answer"),
    QueryAction.CLOSE: gettext_lazy("Close"),
    QueryAction.REOPEN: gettext_lazy("Re-open"),
}


def allowed(user: User, query: Query, action: str) -> bool:
    """The site's nurses answer; the coordinators raise, close and re-open (SPEC section 2). The
    caller has found the query through access (the user reads its centre)."""
    if action == QueryAction.ANSWER:
        return access.can_write(user, query.patient)
    if action in (QueryAction.CLOSE, QueryAction.REOPEN):
        return access.is_coordinator(user)
    return False


def may(user: User, query: Query, action: str) -> bool:
    """The user's role allows the action and the query is in a state it starts from."""
    return allowed(user, query, action) and query.state in TRANSITIONS[action][1]


def _text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("Write a message.")}, code="required")
    if len(text) > MESSAGE_MAX_LENGTH:
        raise ValidationError(
            {"text": _("At most %(count)s characters.") % {"count": MESSAGE_MAX_LENGTH}}, code="max_length"
        )
    return text


def field_label(case_form: crf.CaseForm, field: str) -> str:
    """A query's field as the form labels it; the form as a whole when it has none."""
    if not field:
        return str(_("the form as a whole"))
    try:
        return str(case_form.model._meta.get_field(field).verbose_name)
    except FieldDoesNotExist:  # a variable no longer on the form: its name
        return field


def where(form_key: str, field: str = "") -> str:
    """What a query is about, as people read it: "Assessment week 8, C-reactive protein (mg/L)"."""
    case_form = crf.BY_KEY.get(form_key)
    if case_form is None:
        return form_key
    title = str(case_form.title)
    return f"{title}, {field_label(case_form, field)}" if field else title


def field_choices(case_form: crf.CaseForm) -> list[tuple[str, str]]:
    """What a query may be raised on: the form as a whole, or one of its input fields."""
    labels = [(name, str(case_form.model._meta.get_field(name).verbose_name)) for name in case_form.fields]
    return [("", _("the form as a whole")), *labels]


def _row_exists(case_form: crf.CaseForm, patient: Patient, row_id: int) -> bool:
    if case_form.model is Patient:
        return row_id == patient.pk
    match = {"visit": case_form.visit} if case_form.visit else {}
    return case_form.model.objects.filter(patient=patient, pk=row_id, **match).exists()


def raise_query(
    *,
    patient: Patient,
    form_key: str,
    row_id: int | None,
    field: str,
    text: str | Wording,
    by: User | None,
    rule: str = QueryCheck.MANUAL,
    cause: str = "",
) -> Query:
    """Open a query on a field of a form row (or on the form). `by` None: an automatic check,
    which names its `rule` and `cause`; a second query on a cause whose query is not closed is
    refused by the database, and answered here with the query already open."""
    case_form = crf.BY_KEY.get(form_key)
    if case_form is None:
        raise ValidationError({"form": _("No such form.")}, code="invalid")
    if field and field not in case_form.fields:
        raise ValidationError({"field": _("This form has no such field.")}, code="invalid")
    if row_id is not None and not _row_exists(case_form, patient, row_id):
        raise ValidationError({"row": _("This form has no such row.")}, code="invalid")
    message = _message(text)
    now = timezone.now()
    query = Query(
        patient=patient,
        form=form_key,
        row_id=row_id,
        field=field,
        rule=rule,
        cause=cause,
        raised_by=by,
        raised_at=now,
        updated_at=now,
    )
    try:
        with (
            transaction.atomic(),
            audit_context(user=by, reason=message["text"], source="query" if by else "data_checks", own=by is None),
        ):
            query.save()
            QueryMessage.objects.create(
                query=query, action=QueryAction.RAISE, author=by, at=now, state=query.state, **message
            )
    except IntegrityError:
        if cause:  # the cause's query is open already (a check run at the same time)
            return Query.objects.exclude(state=QueryState.CLOSED).get(cause=cause)
        raise
    return query


def act(*, query: Query, action: str, text: str | Wording, by: User | None) -> Query:
    """Answer, close or re-open a query, with a message. `by` None: an automatic check closing its
    own query (the cause is gone). Refused (PermissionDenied) when the user may not, or when the
    query is not in a state the action starts from (someone else acted first)."""
    message = _message(text)
    with transaction.atomic():
        query = Query.objects.select_for_update().select_related("patient").get(pk=query.pk)
        if by is not None and not may(by, query, action):
            raise PermissionDenied(_("You cannot do this to this query (now)."))
        if by is None and (action != QueryAction.CLOSE or not query.rule):
            raise PermissionDenied("Only an automatic query closes itself.")
        state, starts = TRANSITIONS[action]
        if query.state not in starts:
            raise PermissionDenied(_("You cannot do this to this query (now)."))
        if action == QueryAction.REOPEN and query.cause:
            _refuse_a_second_for_the_cause(query)
        now = timezone.now()
        with audit_context(user=by, reason=message["text"], source="query" if by else "data_checks", own=by is None):
            query.state = state
            query.updated_at = now
            query.save(update_fields=["state", "updated_at"])
            QueryMessage.objects.create(query=query, action=action, author=by, at=now, state=state, **message)
    return query


def _refuse_a_second_for_the_cause(query: Query) -> None:
    """An automatic query's cause has one query not closed at most: re-opening an old one while a
    newer query on the same cause is open would make two (the database's unique index refuses)."""
    newer = Query.objects.filter(cause=query.cause).exclude(pk=query.pk).exclude(state=QueryState.CLOSED).first()
    if newer is not None:
        said = _("Query #%(id)s on the same cause is open: answer or close that one.")
        raise ValidationError({"text": said % {"id": newer.pk}}, code="duplicate")


def note(*, query: Query, text: str | Wording) -> QueryMessage:
    """A message of an automatic check that changes no state: on a query a coordinator closed
    while its cause stood, that the cause is now gone (cohort/data_checks.py opens a new query
    should it come back)."""
    message = _message(text)
    with transaction.atomic(), audit_context(user=None, reason=message["text"], source="data_checks", own=True):
        return QueryMessage.objects.create(
            query=query, action=QueryAction.NOTE, author=None, at=timezone.now(), state=query.state, **message
        )


def cite(query: Query) -> str:
    """How a reason for change cites the query it answers: "query #12"."""
    return _("query #%(id)s") % {"id": query.pk}


def reason_citing(queries: list[Query], reply: str, reason: str) -> str:
    """The reason for change of a data change made in answer to queries: the nurse's own reason
    (or her reply) followed by the queries it answers, e.g. "typo in CRP (query #12)"."""
    cited = ", ".join(cite(query) for query in queries)
    text = (reason or reply).strip()
    return f"{text} ({cited})" if text else cited


def waiting_on(patient: Patient, form_key: str, row_id: int | None) -> list[Query]:
    """The queries on a form (row) that wait for the site: what a nurse answers on its page."""
    found = Query.objects.filter(patient=patient, form=form_key, state__in=QUERY_WAITING_FOR_SITE)
    if row_id is not None:
        found = found.filter(models.Q(row_id=row_id) | models.Q(row_id__isnull=True))
    return list(found.order_by("raised_at", "id"))


def conversations(patient: Patient, form_key: str | None = None) -> list[Query]:
    """A patient's queries (of one form, every row's, when `form_key` is given) with their messages
    and authors, oldest first: the form page, the casebook PDF. Three queries (one when there are
    none)."""
    values = {access.PATIENT_ID: patient.pk, access.placeholder("form"): form_key}
    found = _conversations_statement(of_form=bool(form_key)).run(values)
    models.prefetch_related_objects(found, "messages__author")
    return found


@functools.cache
def _conversations_statement(*, of_form: bool) -> access.CompiledRows:
    """conversations' first query, composed by the ORM once per process (the patient and the form
    placeholders): composing it cost more CPU than running it, on every form page."""
    of_form_match = {"form": access.placeholder("form")} if of_form else {}
    found = Query.objects.filter(patient_id=access.PATIENT_ID, **of_form_match)
    return access.CompiledRows.of(found.select_related("raised_by").order_by("raised_at", "id"))


def on_row(found: list[Query], row_id: int | None) -> list[Query]:
    """Of a form's queries, those about one row (and those about the form as a whole)."""
    return [query for query in found if query.row_id is None or query.row_id == row_id]


def not_closed(patient: Patient) -> list[Query]:
    """A patient's queries that still need someone, oldest first. One query, composed once per
    process."""
    return _not_closed_statement().run({access.PATIENT_ID: patient.pk})


@functools.cache
def _not_closed_statement() -> access.CompiledRows:
    found = Query.objects.filter(patient_id=access.PATIENT_ID).exclude(state=QueryState.CLOSED)
    return access.CompiledRows.of(found.order_by("raised_at", "id"))


def open_counts(patients) -> dict[int, int]:
    """Queries waiting for the site (open or re-opened), by patient id. One query for a page."""
    ids = [patient.pk for patient in patients]
    found = dict(_open_counts_statement().run({access.PATIENT_IDS: ids}))
    return {pk: found.get(pk, 0) for pk in ids}


@functools.cache
def _open_counts_statement() -> access.CompiledValues:
    """open_counts' query, composed by the ORM once per process."""
    return access.CompiledValues.of(
        Query.objects.filter(patient_id__in=access.any_patient_id(), state__in=QUERY_WAITING_FOR_SITE)
        .order_by()
        .values_list("patient_id")
        .annotate(n=models.Count("id"))
    )


@dataclass
class FormQueries:
    """A casebook form's queries, as its cell shows them."""

    waiting: int = 0  # open or re-opened: the site's turn
    answered: int = 0  # the coordinator's turn

    @property
    def any(self) -> bool:
        return bool(self.waiting or self.answered)


def by_form(queries: list[Query]) -> dict[str, FormQueries]:
    """Queries not closed, counted per casebook form key."""
    waiting = Counter(q.form for q in queries if q.state in QUERY_WAITING_FOR_SITE)
    answered = Counter(q.form for q in queries if q.state == QueryState.ANSWERED)
    return {
        form.key: FormQueries(waiting=waiting[form.key], answered=answered[form.key])
        for form in crf.FORMS
        if waiting[form.key] or answered[form.key]
    }


def with_open(patients: models.QuerySet[Patient]) -> models.QuerySet[Patient]:
    """The patients with a query waiting for the site (what open_counts counts), in SQL: the
    patient list's filter, so a filtered list pages right."""
    waiting = Query.objects.filter(patient=models.OuterRef("pk"), state__in=QUERY_WAITING_FOR_SITE)
    return patients.filter(models.Exists(waiting))
