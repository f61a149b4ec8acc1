"""The validation layer: conditional and cross-form rules (SPEC section 3).

One entry point for every write path: the web save, the admin and the importer call `check` (hard
rules: the save is refused), and what shows a record calls `soft_flags` (unusual but admissible
values: saved with a flag). Within-row rules are database constraints on the models; `row_problems`
runs them before the database would, so their messages reach the field. Each message names what is
allowed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import CombinedExpression
from django.utils import formats
from django.utils.translation import gettext

from cohort import crf, display
from cohort.choices import FormStatus
from cohort.crf import PatientRecord
from cohort.models import VISIT_SCHEDULE, FollowUp, Reinduction


@dataclass(frozen=True)
class Problem:
    """A broken rule: the row it is reported on, the variable and what is allowed. A soft flag also
    names the values it was raised on (`basis`), which a confirmation of it is tied to."""

    row: Any
    field: str
    message: str
    basis: str = ""

    @property
    def form(self) -> str:
        return self.row._meta.model_name

    def __str__(self) -> str:
        """Reported away from its row (on another form's page, in the admin): which form and row,
        which field by its label, its value, what is allowed."""
        return f"{self.where}: {self.label} ({self.value}) {self.message}"

    @property
    def where(self) -> str:
        """The form it is on, as the casebook names it, and for a repeating form the row."""
        form = crf.form_of(self.row)
        return f"{form.title} ({self.row})" if form.repeating else str(form.title)

    @property
    def label(self) -> str:
        """The field's label, as the form shows it (the variable name only if it has none)."""
        try:
            return str(self.row._meta.get_field(self.field).verbose_name)
        except FieldDoesNotExist:
            return self.field

    @property
    def value(self) -> str:
        """The field's value as people read it."""
        field = display.field_by_attname(type(self.row), self.field) or display.field_by_attname(
            type(self.row), f"{self.field}_id"
        )
        return display.value_text(field, getattr(self.row, field.attname) if field else None)

    @property
    def key(self) -> tuple[str, int | None, str, str]:
        return (self.form, self.row.pk, self.field, self.basis)


def row_problems(row: models.Model, *, skip: set[str] = frozenset()) -> list[Problem]:
    """Types, ranges, codes and within-row rules of one row, with the database's own constraints.
    `skip`: fields already reported (an unreadable import cell) and every rule that reads them."""
    exclude = [f.name for f in row._meta.fields if f.name in crf.NOT_INPUT or f.name in skip]
    errors: dict[str, list[ValidationError]] = {}
    try:
        row.clean_fields(exclude=exclude)
    except ValidationError as error:
        errors.update(error.error_dict)
    failed = set(errors) | set(exclude)
    for constraint in row._meta.constraints:
        # Uniqueness across rows is a rule of the whole record (cross_form_problems), checked on the
        # rows as they will be, not on what the database holds now.
        if not isinstance(constraint, models.CheckConstraint):
            continue
        if _references(constraint.condition) & failed:
            continue
        try:
            holds = _holds(constraint.condition, row)
        except NotImplementedError:
            holds = None
        if holds is True:
            continue
        try:
            # Unknown to the evaluator below, or broken: PostgreSQL has the last word.
            constraint.validate(type(row), row, exclude=failed)
        except ValidationError as error:
            said = getattr(constraint, "said", None)
            for name, messages in error.update_error_dict({}).items():
                errors.setdefault(name, []).extend([ValidationError(said(), code="said")] if said else messages)
    problems = []
    for name, messages in errors.items():
        for message in messages:
            problems.append(Problem(row, name, _explain(row, name, message)))
    return problems


def _references(condition: Q) -> set[str]:
    names = set()
    for child in condition.children:
        if isinstance(child, Q):
            names |= _references(child)
        else:
            lookup, value = child
            names.add(lookup.split(LOOKUP_SEP)[0])
            if isinstance(value, (F, CombinedExpression)):
                names |= {f.name for f in _f_nodes(value)}
    return names


def _f_nodes(expression) -> list[F]:
    if isinstance(expression, F):
        return [expression]
    if isinstance(expression, CombinedExpression):
        return [*_f_nodes(expression.lhs), *_f_nodes(expression.rhs)]
    return []


def _holds(condition: Q, row: models.Model) -> bool:
    """A check constraint's condition evaluated in Python with SQL's three-valued logic, so a
    import of thousands of rows needs no query per row and constraint. A CHECK passes unless its
    condition is false (NULL passes), as in PostgreSQL. Raises NotImplementedError for anything
    this small interpreter does not know; the caller then asks the database."""
    return _eval(condition, row) is not False


def _eval(node: Q, row: models.Model) -> bool | None:
    results = [_eval(child, row) if isinstance(child, Q) else _lookup(child, row) for child in node.children]
    if node.connector == Q.AND:
        value = False if False in results else (None if None in results else True)
    else:
        value = True if True in results else (None if None in results else False)
    if node.negated:
        value = None if value is None else not value
    return value


def _value(expression, row: models.Model):
    if isinstance(expression, F):
        return getattr(row, row._meta.get_field(expression.name).attname)
    if isinstance(expression, CombinedExpression) and expression.connector == "+":
        left, right = _value(expression.lhs, row), _value(expression.rhs, row)
        return None if left is None or right is None else left + right
    if isinstance(expression, (str, int, float, Decimal, dt.date, list, tuple, bool)) or expression is None:
        return expression
    raise NotImplementedError(repr(expression))


def _lookup(child: tuple[str, Any], row: models.Model) -> bool | None:
    lookup, expected = child
    name, _, operator = lookup.partition(LOOKUP_SEP)
    actual = getattr(row, row._meta.get_field(name).attname)
    if operator == "isnull":
        return (actual is None) is bool(expected)
    expected = _value(expected, row)
    if actual is None or expected is None:
        return None
    if operator in ("", "exact"):
        return actual == expected
    if operator == "in":
        return actual in expected
    if operator == "gte":
        return actual >= expected
    if operator == "lte":
        return actual <= expected
    if operator == "regex":
        return re.search(expected, actual) is not None
    raise NotImplementedError(lookup)


def _explain(row: models.Model, name: str, error: ValidationError) -> str:
    """Django's generic messages, rewritten to say what is allowed."""
    code = getattr(error, "code", None)
    if code in {"blank", "null", "required"}:
        return gettext("is required.")
    if code == "invalid_choice" and name != NON_FIELD_ERRORS:
        allowed = ", ".join(str(value) for value, _ in row._meta.get_field(name).flatchoices)
        return gettext("'%(value)s' is not an allowed code; allowed: %(allowed)s.") % {
            "value": getattr(row, name),
            "allowed": allowed,
        }
    if code == "max_length":
        return gettext("must be at most %(limit)s characters.") % {"limit": row._meta.get_field(name).max_length}
    return " ".join(gettext(message) for message in error.messages)


def check(
    record: PatientRecord,
    rows: Iterable[Any] | None = None,
    *,
    skip: Callable[[Any], Collection[str]] | None = None,
    cross_form: bool = True,
) -> list[Problem]:
    """Every hard rule broken by `rows` (default: every row of the record) and, with `cross_form`,
    by the record as a whole: the one validation entry point of the web save, the admin and the
    importer. `skip(row)`: a row's fields already reported (cells that could not be read); the rules
    that read them are left out, and so are the cross-form rules, which would only repeat the error
    in other words (a missing date seen as 'no re-induction dose')."""
    problems: list[Problem] = []
    skipped = False
    for row in record.rows() if rows is None else rows:
        failed = set(skip(row)) if skip is not None else set()
        skipped = skipped or bool(failed)
        problems.extend(row_problems(row, skip=failed))
    if cross_form and not skipped:
        problems.extend(cross_form_problems(record))
    return problems


def cross_form_problems(record: PatientRecord) -> list[Problem]:
    """The cross-form rules of SPEC section 3 and the data dictionary's notes."""
    problems: list[Problem] = []
    patient = record.patient
    centre = patient.centre if patient.centre_id else None
    if centre is not None and patient.study_id and not patient.study_id.startswith(f"{centre.code}-"):
        problems.append(
            Problem(
                patient,
                "study_id",
                gettext("must start with the centre code and a hyphen (%(prefix)s).") % {"prefix": f"{centre.code}-"},
            )
        )

    # Exactly one initial induction and one re-induction (at most one while the record is built).
    counts = Counter(dose.phase for dose in record.doses)
    seconds = {
        "initial_induction": gettext("a patient has exactly one initial induction dose; this is a second."),
        "reinduction": gettext("a patient has exactly one re-induction dose; this is a second."),
    }
    for phase, message in seconds.items():
        if counts[phase] > 1:
            extra = [dose for dose in record.doses if dose.phase == phase][1:]
            for dose in extra:
                problems.append(Problem(dose, "phase", message))

    initial = record.dose_date("initial_induction")
    t0 = record.reinduction_date
    # ...and once the record is complete (its last form, the status at follow-up, marked complete),
    # exactly one of each. A missing re-induction is reported at the follow-up date already.
    follow_up = record.follow_up
    if (
        follow_up is not None
        and follow_up.form_status == FormStatus.COMPLETE
        and t0
        and not counts["initial_induction"]
    ):
        problems.append(
            Problem(
                follow_up,
                "status",
                gettext(
                    "a complete record has exactly one initial induction dose: record it (ustekinumab doses) "
                    "first, or mark this form incomplete."
                ),
            )
        )
    if initial and t0 and t0 <= initial:
        dose = next(d for d in record.doses if d.phase == "reinduction")
        problems.append(
            Problem(
                dose,
                "dose_date",
                gettext("the re-induction must be after the initial induction (%(date)s).")
                % {"date": display.date_text(initial)},
            )
        )

    first_dose = initial or min((d.dose_date for d in record.doses if d.dose_date), default=None)
    if first_dose:
        for course in record.prior_biologics:
            if course.stop_date and course.stop_date >= first_dose:
                problems.append(
                    Problem(
                        course,
                        "stop_date",
                        gettext("must be before the first ustekinumab dose (%(date)s).")
                        % {"date": display.date_text(first_dose)},
                    )
                )

    if record.reinduction is not None:
        problems.extend(_reinduction_problems(record.reinduction, initial, t0))

    problems.extend(_assessment_problems(record, t0))

    for event in record.adverse_events:
        problems.extend(_after_t0(event, "onset_date", t0))

    if follow_up is not None:
        problems.extend(_adverse_events_any_problems(record, follow_up))
        problems.extend(_after_t0(follow_up, "last_follow_up_date", t0))
        problems.extend(_after_t0(follow_up, "discontinuation_date", t0))
        dated = [a for a in record.assessments if a.assessment_date]
        latest = max(dated, key=lambda a: a.assessment_date, default=None)
        if latest and follow_up.last_follow_up_date and latest.assessment_date > follow_up.last_follow_up_date:
            problems.append(
                Problem(
                    follow_up,
                    "last_follow_up_date",
                    gettext("must be on or after every assessment date (the %(visit)s assessment is on %(date)s).")
                    % {"visit": latest.get_visit_display(), "date": display.date_text(latest.assessment_date)},
                )
            )
    return problems


def _adverse_events_any_problems(record: PatientRecord, follow_up: FollowUp) -> list[Problem]:
    """Data dictionary, follow_up.adverse_events_any: 'no' means no adverse event rows; 'yes' needs
    at least one once the record is complete."""
    answer, events = follow_up.adverse_events_any, len(record.adverse_events)
    if answer == "no" and events:
        return [
            Problem(
                follow_up,
                "adverse_events_any",
                gettext("is no, but %(count)s adverse event(s) are recorded.") % {"count": events},
            )
        ]
    if answer == "yes" and not events and follow_up.form_status == FormStatus.COMPLETE:
        return [
            Problem(
                follow_up,
                "adverse_events_any",
                gettext("is yes: record the adverse events (adverse events form) first, or mark this form incomplete."),
            )
        ]
    return []


def _reinduction_problems(form: Reinduction, initial: dt.date | None, t0: dt.date | None) -> list[Problem]:
    if initial is None or t0 is None:
        if initial is None and t0 is None:
            message = gettext(
                "record the initial induction and re-induction dose first: the date must lie between them."
            )
        elif initial is None:
            message = gettext("record the initial induction dose first: the date must lie between them.")
        else:
            message = gettext("record the re-induction dose first: the date must lie between them.")
        return [Problem(form, "lor_date", message)]
    if form.lor_date and not initial <= form.lor_date <= t0:
        return [
            Problem(
                form,
                "lor_date",
                gettext(
                    "must lie between the initial induction (%(initial)s) and the re-induction (%(t0)s) dose dates."
                )
                % {"initial": display.date_text(initial), "t0": display.date_text(t0)},
            )
        ]
    return []


def _after_t0(row: Any, name: str, t0: dt.date | None) -> list[Problem]:
    value = getattr(row, name)
    if value is None:
        return []
    if t0 is None:
        return [Problem(row, name, gettext("record the re-induction dose first: this date must be on or after it."))]
    if value < t0:
        said = gettext("must be on or after the re-induction dose date (%(date)s).")
        return [Problem(row, name, said % {"date": display.date_text(t0)})]
    return []


def _assessment_problems(record: PatientRecord, t0: dt.date | None) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for assessment in record.assessments:
        if assessment.visit in seen:
            problems.append(
                Problem(
                    assessment,
                    "visit",
                    gettext("this patient already has a %(visit)s assessment.")
                    % {"visit": assessment.get_visit_display()},
                )
            )
        seen.add(assessment.visit)
        if assessment.assessment_date is None:
            continue
        if t0 is None:
            problems.extend(_after_t0(assessment, "assessment_date", t0))
        elif assessment.visit == "week_0":
            if abs((assessment.assessment_date - t0).days) > 14:
                problems.append(
                    Problem(
                        assessment,
                        "assessment_date",
                        gettext("the week 0 assessment must be within 14 days of the re-induction dose (%(date)s).")
                        % {"date": display.date_text(t0)},
                    )
                )
        else:
            problems.extend(_after_t0(assessment, "assessment_date", t0))
    return problems


def soft_flags(record: PatientRecord, *, include_confirmed: bool = False) -> list[Problem]:
    """Admissible but unusual values, saved with a visible flag (SPEC section 3), but for those
    someone has confirmed (unless `include_confirmed`)."""
    flags = _soft_flags(record)
    return flags if include_confirmed else [flag for flag in flags if flag.key not in record.confirmed]


def _soft_flags(record: PatientRecord) -> list[Problem]:
    flags: list[Problem] = []
    t0 = record.reinduction_date
    for assessment in record.assessments:
        if assessment.in_window(t0) is False:
            nominal, low, high = VISIT_SCHEDULE[assessment.visit]
            day = assessment.study_day(t0)
            flags.append(
                Problem(
                    assessment,
                    "assessment_date",
                    gettext(
                        "day %(day)s after re-induction is outside the %(visit)s window (days %(low)s to %(high)s)."
                    )
                    % {"day": day, "visit": assessment.get_visit_display(), "low": low, "high": high},
                    basis=f"{assessment.assessment_date} day {day}",
                )
            )
    for dose in record.doses:
        if dose.off_weight_band:
            flags.append(
                Problem(
                    dose,
                    "dose_mg",
                    gettext("%(dose)s mg differs from the weight-based dose for %(weight)s kg (%(expected)s mg).")
                    % {
                        "dose": formats.localize(dose.dose_mg),
                        "weight": formats.localize(dose.weight_kg),
                        "expected": dose.expected_iv_dose,
                    },
                    basis=f"{dose.dose_mg} mg {dose.weight_kg} kg",
                )
            )
    return flags


class RuleErrors(ValidationError):
    """The broken rules as a form-style ValidationError that keeps its problems, so the web page
    can put another form's problem beside the field of this form that caused it, with a link."""

    def __init__(self, errors: dict, problems: list[Problem], row: Any):
        super().__init__(errors)
        self.problems = problems
        self.row = row


def raise_for(problems: list[Problem], row: Any, *, also: dict[str, list[str]] | None = None) -> None:
    """Raise the problems as a form-style ValidationError: the row's own at their fields, the rest
    (another row of the record that the change would make invalid) as non-field errors. `also`:
    other errors of the same save (a missing reason for change), reported together."""
    if not problems and not also:
        return
    errors: dict[str, list[str]] = {name: list(messages) for name, messages in (also or {}).items()}
    for problem in problems:
        if problem.row is row:
            errors.setdefault(problem.field, []).append(problem.message)
        else:
            errors.setdefault(NON_FIELD_ERRORS, []).append(str(problem))
    raise RuleErrors(errors, problems, row)
