"""The statements every page and save of a patient runs are planned once per connection
(cohort.prepared): the first run prepares them in its own round trip, later runs only execute them,
PostgreSQL settles on one plan, and what they read is what the plain statement reads, on a new
connection, after a rollback and after a failure too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from cohort import access, prepared, services
from cohort.models import FollowUp
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db(transaction=True)

STUDY_ID = "SELECT study_id, centre_id FROM cohort_patient WHERE id = %s AND study_id LIKE 'A%%'"


def run(sql: str, params) -> tuple[list, list[str]]:
    with CaptureQueriesContext(connection) as sent, connection.cursor() as cursor:
        prepared.execute(cursor, sql, params)
        rows = cursor.fetchall()
    return rows, [query["sql"] for query in sent.captured_queries]


def plain(sql: str, params) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def server_statements() -> dict[str, tuple[int, int]]:
    """This connection's prepared statements: (generic plans, custom plans) by name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
        return {name: (generic, custom) for name, generic, custom in cursor.fetchall()}


def test_the_first_run_prepares_in_the_same_round_trip_and_later_runs_only_execute():
    people = personae()
    patients = [make_patient(people["centre_a"], people["nurse_a"]) for _ in range(2)]

    rows, sent = run(STUDY_ID, [patients[0].pk])
    assert rows == plain(STUDY_ID, [patients[0].pk]) == [("AMC-001", people["centre_a"].pk)]
    assert len(sent) == 1 and sent[0].startswith("PREPARE ecrf_") and "; EXECUTE ecrf_" in sent[0]

    rows, sent = run(STUDY_ID, [patients[1].pk])
    assert rows == [("AMC-002", people["centre_a"].pk)]
    assert len(sent) == 1 and sent[0].startswith("EXECUTE ecrf_")  # the literal % survived both ways


def test_postgresql_keeps_one_generic_plan_for_the_form_rows_read():
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    for _ in range(8):  # a request's user, whose roles come with the row
        nurse = User.objects.get(pk=people["nurse_a"].pk)
        row = access.get_row_for_user(nurse, patient.study_id, FollowUp)
        assert row.patient_id == patient.pk
    statement = access._row_statement(FollowUp, (), with_roles=True)
    generic, custom = server_statements()[prepared._forms(statement.sql)[0]]
    assert generic >= 1 and custom <= 5  # planned with its values five times at most, then never again


def test_a_new_connection_prepares_again():
    people = personae()
    patient = make_patient(people["centre_a"], people["nurse_a"])
    run(STUDY_ID, [patient.pk])
    connection.close()
    assert server_statements() == {}
    rows, sent = run(STUDY_ID, [patient.pk])
    assert rows == [("AMC-001", people["centre_a"].pk)] and sent[0].startswith("PREPARE ")


def test_a_statement_prepared_in_a_transaction_that_rolls_back_is_still_prepared():
    people = personae()
    patient = make_patient(people["centre_a"], people["nurse_a"])
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        run(STUDY_ID, [patient.pk])
        1 / 0  # noqa: B018
    rows, sent = run(STUDY_ID, [patient.pk])
    assert rows == [("AMC-001", people["centre_a"].pk)] and sent[0].startswith("EXECUTE ")


def test_after_a_failed_first_run_the_connection_runs_the_statement_unprepared():
    people = personae()
    patient = make_patient(people["centre_a"], people["nurse_a"])
    dividing = "SELECT study_id, 1 / %s FROM cohort_patient WHERE id = %s"
    with pytest.raises(DatabaseError, match="division by zero"):
        run(dividing, [0, patient.pk])  # the PREPARE may or may not have stayed
    rows, sent = run(dividing, [1, patient.pk])
    assert rows == [("AMC-001", 1)]
    assert sent == [dividing % ("1", str(patient.pk))]


def test_several_statements_go_in_one_round_trip_with_the_last_ones_rows():
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with CaptureQueriesContext(connection) as sent, transaction.atomic():
        for _ in range(3):
            record, active = services.locked_record(patient.pk)
            assert record.patient.pk == patient.pk and record.follow_up.patient_id == patient.pk
            assert active == []
    reads = [query["sql"] for query in sent.captured_queries if "ecrf_" in query["sql"]]  # not BEGIN, COMMIT
    assert [read.count("EXECUTE ecrf_") for read in reads] == [2, 2, 2]
    assert [read.count("PREPARE ") for read in reads] == [2, 0, 0]


def test_pages_and_saves_work_on_a_connection_that_prepared_their_statements(client):
    """A form page, a save and the page again on one connection: the second and later requests
    execute what the first prepared."""
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    login_as(client, people["nurse_a"])
    url = f"/patients/{patient.study_id}/forms/follow_up/"
    for _ in range(2):
        assert client.get(url).status_code == 200
    assert len(server_statements()) >= 3
    follow_up = FollowUp.objects.get(patient=patient)
    data = {
        "status": follow_up.status,
        "last_follow_up_date": follow_up.last_follow_up_date.isoformat(),
        "discontinuation_date": follow_up.discontinuation_date.isoformat() if follow_up.discontinuation_date else "",
        "discontinuation_reason": follow_up.discontinuation_reason,
        "next_therapy": "vedolizumab" if follow_up.next_therapy != "vedolizumab" else "",
        "form_status": follow_up.form_status,
        "version": follow_up.version,
        "reason_for_change": "checked against the source",
    }
    for _ in range(2):
        response = client.post(url, data)
        assert response.status_code == 302, response.content.decode()[:2000]
        data["version"] += 1
        data["next_therapy"] = "" if data["next_therapy"] else "vedolizumab"
    assert FollowUp.objects.get(patient=patient).version == follow_up.version + 2
