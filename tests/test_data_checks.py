"""Automatic data queries (SPEC section 10, `python manage.py data_checks` of section 8): an
unconfirmed flag, an overdue visit and a form left incomplete after its window each open one system
query, never twice, that closes itself with a note when its cause is gone; after a save through
HTTP without running the command; hourly under beat; in a real worker."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cohort import crf, data_checks, locks, queries, services
from cohort.models import Assessment, DataCheckRequest, Patient, Query, QueryAction, QueryCheck, QueryState, Reinduction
from tests.base import T0, make_patient, make_record
from tests.test_casebook_views import assessment_data, form_url

pytestmark = pytest.mark.django_db

LATER = T0 + dt.timedelta(days=1000)  # every window of the T0 visit schedule has closed


def complete(patient: Patient) -> Patient:
    """Mark every form of the patient complete: a clean casebook, nothing for the checks."""
    for form in crf.FILES.values():
        rows = Patient.objects.filter(pk=patient.pk) if form.model is Patient else form.model.objects
        rows.filter(**({} if form.model is Patient else {"patient": patient})).update(form_status="complete")
    return patient


@pytest.fixture
def clean(patient):
    return complete(patient)


def record_of(patient: Patient) -> crf.PatientRecord:
    return services.patient_record(services.with_forms(Patient.objects.filter(pk=patient.pk)).get())


def automatic(patient) -> list[Query]:
    return list(Query.objects.filter(patient=patient).exclude(rule="").order_by("id"))


def last_message(query: Query):
    return query.messages.order_by("-at", "-id").first()


def test_a_clean_casebook_opens_nothing(clean):
    assert str(data_checks.run(today=LATER)) == "0 opened, 0 closed, 0 open"
    assert not Query.objects.exists()


def test_an_unconfirmed_flag_opens_one_query_on_its_field(clean):
    week_8 = Assessment.objects.get(patient=clean, visit="week_8")
    Assessment.objects.filter(pk=week_8.pk).update(assessment_date=T0 + dt.timedelta(days=90))

    summary = data_checks.run(today=LATER)

    (query,) = automatic(clean)
    assert (summary.opened, summary.open_now) == (1, 1)
    assert (query.rule, query.form, query.row_id, query.field, query.state) == (
        QueryCheck.FLAG,
        "week_8",
        week_8.pk,
        "assessment_date",
        QueryState.OPEN,
    )
    assert query.cause == f"flag:assessment:{week_8.pk}:assessment_date:{T0 + dt.timedelta(days=90)} day 90"
    assert query.raised_by is None
    raised = last_message(query)
    assert (raised.action, raised.author) == (QueryAction.RAISE, None)
    assert raised.text.startswith("Flagged value not confirmed: day 90 after re-induction is outside the week 8 window")


def test_an_overdue_visit_opens_one_query_on_the_visit_once_its_window_has_ended(clean):
    Assessment.objects.filter(patient=clean, visit="week_20").delete()
    window_end = T0 + dt.timedelta(days=168)

    assert data_checks.run(today=window_end).opened == 0  # the window's last day: due, not overdue
    assert data_checks.run(today=window_end + dt.timedelta(days=1)).opened == 1

    (query,) = automatic(clean)
    assert (query.rule, query.form, query.row_id, query.field) == (QueryCheck.OVERDUE_VISIT, "week_20", None, "")
    assert query.cause == f"overdue:{clean.pk}:week_20"
    assert f"ended on {window_end.day} {window_end:%b %Y}" in last_message(query).text  # the one date style


@pytest.mark.parametrize(
    "key, last_day",
    [
        ("week_8", 84),  # an assessment: its own visit's window
        ("reinduction", 14),  # a baseline form: week 0's window
        ("follow_up", 420),  # an end form: the last visit's (week 52) window
        ("doses", 14),  # a repeating baseline form: each incomplete row
    ],
)
def test_a_form_left_incomplete_opens_one_query_on_its_row_once_its_window_has_ended(clean, key, last_day):
    case_form = crf.form(key)
    row = case_form.rows(record_of(clean))[-1]
    type(row).objects.filter(pk=row.pk).update(form_status="incomplete")

    assert data_checks.run(today=T0 + dt.timedelta(days=last_day)).opened == 0
    assert data_checks.run(today=T0 + dt.timedelta(days=last_day + 1)).opened == 1

    (query,) = automatic(clean)
    assert (query.rule, query.form, query.row_id, query.field) == (QueryCheck.INCOMPLETE_FORM, key, row.pk, "")
    assert query.cause == f"incomplete:{clean.pk}:{key}:{row.pk}"
    assert "is marked incomplete" in last_message(query).text


def test_the_command_opens_nothing_twice_and_prints_its_counts(patient):
    # make_record leaves every row incomplete, and every window of 2022 has ended: one query a row.
    rows = len(record_of(patient).rows())
    first, second = StringIO(), StringIO()

    call_command("data_checks", stdout=first)
    call_command("data_checks", stdout=second)

    assert first.getvalue() == f"data_checks: {rows} opened, 0 closed, {rows} open\n"
    assert second.getvalue() == f"data_checks: 0 opened, 0 closed, {rows} open\n"
    assert Query.objects.filter(rule=QueryCheck.INCOMPLETE_FORM).count() == rows == 13
    assert len({query.cause for query in Query.objects.all()}) == rows


def test_a_query_closes_itself_with_a_note_when_the_form_is_completed(clean):
    Reinduction.objects.filter(patient=clean).update(form_status="incomplete")
    data_checks.run(today=LATER)
    Reinduction.objects.filter(patient=clean).update(form_status="complete")

    summary = data_checks.run(today=LATER)

    (query,) = automatic(clean)
    assert (summary.opened, summary.closed, summary.open_now) == (0, 1, 0)
    assert query.state == QueryState.CLOSED
    note = last_message(query)
    assert (note.action, note.author, note.text) == (
        QueryAction.CLOSE,
        None,
        "Closed automatically: the form was marked complete.",
    )


def test_a_flag_query_closes_when_the_flag_is_confirmed_through_http(
    client, people, clean, django_capture_on_commit_callbacks
):
    """After saves: the form's save and the confirmation each run the patient's checks once they
    commit (in-process here: no broker), without the command."""
    client.force_login(people["nurse_a"])
    week_8 = Assessment.objects.get(patient=clean, visit="week_8")
    out_of_window = (T0 + dt.timedelta(days=90)).isoformat()
    data = assessment_data(
        version=week_8.version, assessment_date=out_of_window, form_status="complete", reason_for_change="date"
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(form_url(clean, "week_8"), data).status_code == 302

    (query,) = automatic(clean)
    assert (query.rule, query.form, query.field, query.state) == (
        QueryCheck.FLAG,
        "week_8",
        "assessment_date",
        QueryState.OPEN,
    )

    confirm = reverse("cohort:flag-confirm", args=[clean.study_id])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(confirm, {"form": "assessment", "row": week_8.pk, "field": "assessment_date"})

    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert last_message(query).text == "Closed automatically: the flag was confirmed."
    assert len(automatic(clean)) == 1  # the confirmed flag opens nothing new


@pytest.mark.django_db(transaction=True)
def test_checks_run_in_process_after_a_save_keep_their_own_audit_context(client, people, patient):
    """Without a broker the checks run inside the nurse's request, once her save commits: her
    change keeps her name and reason, and the queries opened then are the checks', not hers."""
    assert settings.CELERY_TASK_ALWAYS_EAGER
    client.force_login(people["nurse_a"])
    Assessment.objects.filter(patient=patient, visit="week_8").update(form_status="complete")
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    data = assessment_data(
        version=week_8.version, crp_mg_l="12.5", form_status="complete", reason_for_change="lab report"
    )
    assert client.post(form_url(patient, "week_8"), data).status_code == 302

    trail = services.patient_audit_trail(patient)
    saved = [entry for entry in trail if entry["model"] == "Assessment" and entry["action"] == "update"][-1]
    assert saved["changes"]["crp_mg_l"][1] == 12.5
    assert (saved["user"], saved["reason"]) == ("nurse_a", "lab report")
    raised = [entry for entry in trail if entry["model"] == "Query"]
    assert len(raised) == 12  # make_record's other rows are incomplete, and their windows ended in 2023
    assert {(entry["user"], entry["source"]) for entry in raised} == {(None, "data_checks")}
    assert all(entry["reason"].endswith("Complete the form and mark it complete.") for entry in raised)


def test_an_overdue_query_closes_when_the_visit_is_entered_through_http(
    client, people, clean, django_capture_on_commit_callbacks
):
    Assessment.objects.filter(patient=clean, visit="week_20").delete()
    data_checks.run()
    (query,) = automatic(clean)
    client.force_login(people["nurse_a"])
    data = assessment_data(assessment_date=(T0 + dt.timedelta(days=140)).isoformat(), form_status="complete")

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(form_url(clean, "week_20"), data).status_code == 302

    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert last_message(query).text == "Closed automatically: the visit was entered."
    assert (last_message(query).author, len(automatic(clean))) == (None, 1)


def test_a_save_requests_its_patients_checks_in_its_transaction_and_a_run_of_the_requests_takes_them(
    client, people, clean
):
    """The save writes the request (the broker message after it is only a wake-up); the worker's
    run of the requests checks that patient and removes it. A save refused writes none."""
    other = complete(make_record(make_patient(people["centre_a"], people["nurse_a"])))
    Assessment.objects.filter(patient__in=[clean, other], visit="week_20").delete()
    data_checks.run()
    DataCheckRequest.objects.all().delete()  # the set-up's own (make_record saves through the services)
    client.force_login(people["nurse_a"])
    week_8 = Assessment.objects.get(patient=clean, visit="week_8")
    stale = assessment_data(version=week_8.version - 1, form_status="complete", reason_for_change="stale")
    assert client.post(form_url(clean, "week_8"), stale).status_code == 200  # someone else saved meanwhile
    assert not DataCheckRequest.objects.exists()

    data = assessment_data(assessment_date=(T0 + dt.timedelta(days=140)).isoformat(), form_status="complete")
    assert client.post(form_url(clean, "week_20"), data).status_code == 302  # no commit callback run here

    assert list(DataCheckRequest.objects.values_list("patient_id", flat=True)) == [clean.pk]
    summary = data_checks.run_requested()
    assert (summary.closed, summary.opened) == (1, 0)
    (query,) = automatic(clean)
    assert last_message(query).text == "Closed automatically: the visit was entered."
    assert automatic(other)[0].state == QueryState.OPEN  # not requested, not checked
    assert not DataCheckRequest.objects.exists()
    assert data_checks.run_requested().closed == 0


def test_a_changed_flagged_value_closes_its_query_and_opens_one_for_the_new_value(clean):
    week_8 = Assessment.objects.filter(patient=clean, visit="week_8")
    week_8.update(assessment_date=T0 + dt.timedelta(days=90))
    data_checks.run(today=LATER)
    week_8.update(assessment_date=T0 + dt.timedelta(days=95))

    summary = data_checks.run(today=LATER)

    old, new = automatic(clean)
    assert (summary.opened, summary.closed) == (1, 1)
    assert (old.state, new.state) == (QueryState.CLOSED, QueryState.OPEN)
    assert last_message(old).text == "Closed automatically: the flagged value was changed or removed."
    assert new.cause.endswith(f"{T0 + dt.timedelta(days=95)} day 95")


def test_an_answered_query_stays_answered_while_its_cause_stands(clean, people):
    Reinduction.objects.filter(patient=clean).update(form_status="incomplete")
    data_checks.run(today=LATER)
    (query,) = automatic(clean)
    queries.act(query=query, action=QueryAction.ANSWER, text="The LOR date is being checked.", by=people["nurse_a"])

    assert str(data_checks.run(today=LATER)) == "0 opened, 0 closed, 1 open"
    query.refresh_from_db()
    assert query.state == QueryState.ANSWERED  # the coordinator decides

    Reinduction.objects.filter(patient=clean).update(form_status="complete")
    assert data_checks.run(today=LATER).closed == 1
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_a_query_the_check_closed_and_a_coordinator_re_opened_is_not_closed_again(clean, people):
    reinduction = Reinduction.objects.filter(patient=clean)
    reinduction.update(form_status="incomplete")
    data_checks.run(today=LATER)
    reinduction.update(form_status="complete")
    data_checks.run(today=LATER)
    (query,) = automatic(clean)
    queries.act(
        query=query,
        action=QueryAction.REOPEN,
        text="Marked complete, but the LOR date is still missing.",
        by=people["coordinator"],
    )

    assert str(data_checks.run(today=LATER)) == "0 opened, 0 closed, 1 open"
    query.refresh_from_db()
    assert query.state == QueryState.REOPENED  # the coordinator's to close


def test_a_query_a_coordinator_closed_is_not_raised_again_until_its_cause_goes_and_comes_back(clean, people):
    reinduction = Reinduction.objects.filter(patient=clean)
    reinduction.update(form_status="incomplete")
    data_checks.run(today=LATER)
    (query,) = automatic(clean)
    queries.act(
        query=query,
        action=QueryAction.CLOSE,
        text="Acceptable: awaiting the referral letter.",
        by=people["coordinator"],
    )

    assert str(data_checks.run(today=LATER)) == "0 opened, 0 closed, 0 open"  # the monitor's decision stands
    assert len(automatic(clean)) == 1

    reinduction.update(form_status="complete")  # the cause goes: noted on the closed query
    assert str(data_checks.run(today=LATER)) == "0 opened, 0 closed, 0 open"
    note = last_message(query)
    assert (note.action, note.author, note.state) == (QueryAction.NOTE, None, QueryState.CLOSED)
    assert note.text == "The cause is gone: the form was marked complete. Should it come back, a new query opens."
    assert data_checks.run(today=LATER).opened == 0  # noted once
    assert query.messages.filter(action=QueryAction.NOTE).count() == 1

    reinduction.update(form_status="incomplete")  # ...and comes back: a new occurrence
    assert data_checks.run(today=LATER).opened == 1
    closed, new = automatic(clean)
    assert (closed.pk, new.cause, new.state) == (query.pk, query.cause, QueryState.OPEN)


def test_a_locked_casebook_gets_no_new_query(patient, people):
    lock, _new = locks.lock(by=people["coordinator"], reason="cleaned, awaiting signature", patient=patient)
    assert data_checks.run(today=LATER).opened == 0
    assert not Query.objects.exists()

    locks.unlock(lock=lock, by=people["coordinator"], reason="re-opened for the follow-up")
    assert data_checks.run(today=LATER).opened == 13


def test_a_run_for_some_patients_leaves_the_others_alone(patient, people):
    other = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    summary = data_checks.run(patients=[other.pk], today=LATER)
    assert (summary.opened, summary.open_now) == (13, 13)
    assert not Query.objects.filter(patient=patient).exists()


def test_a_run_reads_the_cohort_in_a_fixed_number_of_queries(clean, people):
    def queries_of_a_run() -> int:
        with CaptureQueriesContext(connection) as run:
            data_checks.run(today=LATER)
        return len(run.captured_queries)

    one = queries_of_a_run()
    for _ in range(3):
        complete(make_record(make_patient(people["centre_a"], people["nurse_a"])))
    assert queries_of_a_run() == one


def test_an_import_runs_the_checks_of_the_patients_it_names(people, django_capture_on_commit_callbacks):
    from cohort.services import centre_create
    from tests.test_import import COHORT

    centre_create(code="RUMC", name="Synthetic centre C")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_cohort", str(COHORT), stdout=StringIO())

    imported = set(Patient.objects.values_list("pk", flat=True))
    assert Query.objects.exclude(rule="").exists()
    assert set(Query.objects.values_list("patient_id", flat=True)) <= imported
    assert data_checks.run().opened == 0  # the import's own run found them all


def test_beat_runs_the_checks_every_hour():
    from celery.schedules import crontab

    from cohort.celery import app
    from reports import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["data-checks"]
    assert entry["task"] == tasks.data_checks.name == "reports.tasks.data_checks"
    assert entry["task"] in app.tasks
    assert entry["schedule"] == crontab(minute=5)  # every hour, at five past


@pytest.mark.django_db(transaction=True)
def test_a_save_runs_the_patients_checks_in_a_real_worker(client, people, celery_worker, celery_on_redis):
    """The production shape: the web process queues the checks through Redis once the save
    commits; a separate `celery worker` process opens and closes the queries."""
    from tests.conftest import wait_for

    patient = complete(make_record(make_patient(people["centre_a"], people["nurse_a"])))
    Assessment.objects.filter(patient=patient, visit="week_20").delete()
    data_checks.run()
    # (The enrolment's own check ran in the worker too, on whatever rows make_record had written.)
    overdue = Query.objects.exclude(state=QueryState.CLOSED).get(patient=patient, rule=QueryCheck.OVERDUE_VISIT)
    client.force_login(people["nurse_a"])

    data = assessment_data(assessment_date=(T0 + dt.timedelta(days=140)).isoformat(), form_status="complete")
    assert client.post(form_url(patient, "week_20"), data).status_code == 302
    wait_for(lambda: Query.objects.get(pk=overdue.pk).state == QueryState.CLOSED, what="the overdue query to close")
    assert last_message(overdue).text == "Closed automatically: the visit was entered."

    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    data = assessment_data(
        version=week_8.version,
        assessment_date=(T0 + dt.timedelta(days=90)).isoformat(),
        form_status="complete",
        reason_for_change="date corrected",
    )
    assert client.post(form_url(patient, "week_8"), data).status_code == 302
    flag = wait_for(
        lambda: Query.objects.filter(patient=patient, rule=QueryCheck.FLAG).first(), what="the flag's query to open"
    )
    assert (flag.form, flag.row_id, flag.field, flag.state) == ("week_8", week_8.pk, "assessment_date", "open")
