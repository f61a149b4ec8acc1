"""The monitoring figures' counts of patients, CRF rows and queries, and of the patients with a
query waiting for the site, come from appended tallies kept by triggers (migrations 0013 and 0022),
not from counting; they must always equal a count, through every kind of write, and beside another
writer."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from cohort import monitoring, sdv
from cohort.models import QUERY_WAITING_FOR_SITE, Centre, CrfRowTally, Patient, PriorBiologic, Query, QueryState
from cohort.queries import with_open
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db(transaction=True)

COUNT = """
SELECT c.code, count(*) FROM (
    SELECT id AS patient_id FROM cohort_patient
    UNION ALL SELECT patient_id FROM cohort_priorbiologic UNION ALL SELECT patient_id FROM cohort_ustekinumabdose
    UNION ALL SELECT patient_id FROM cohort_reinduction UNION ALL SELECT patient_id FROM cohort_assessment
    UNION ALL SELECT patient_id FROM cohort_followup UNION ALL SELECT patient_id FROM cohort_adverseevent
) AS r JOIN cohort_patient p ON p.id = r.patient_id JOIN cohort_centre c ON c.id = p.centre_id
WHERE p.deleted_at IS NULL GROUP BY c.code
"""


def counted() -> dict[str, tuple[int, int, int, int, int]]:
    """(patients, CRF rows, queries waiting for the site, answered, patients with a waiting query)
    by centre code, counted (the last as the patient list's filter keeps them)."""
    with connection.cursor() as cursor:
        cursor.execute(COUNT)
        rows = dict(cursor.fetchall())

    def queries(code: str, states) -> int:
        return Query.objects.filter(patient__in=Patient.objects.filter(centre__code=code), state__in=states).count()

    return {
        code: (
            Patient.objects.filter(centre__code=code).count(),
            rows[code],
            queries(code, QUERY_WAITING_FOR_SITE),
            queries(code, [QueryState.ANSWERED]),
            with_open(Patient.objects.filter(centre__code=code)).count(),
        )
        for code in rows
    }


def tallied() -> dict[str, tuple[int, int, int, int, int]]:
    """The same, as the monitoring figures and the patient list's filter read them from the tallies."""
    figures = monitoring.by_centre(Centre.objects.all())
    rows = sdv.rows_verified_by_centre(Centre.objects.all())
    ids = dict(Centre.objects.values_list("code", "pk"))
    return {
        code: (
            figures[code].patients,
            rows[code][1],
            figures[code].open_queries,
            figures[code].answered_queries,
            monitoring.filtered_count({ids[code]}, ["open_queries"]),
        )
        for code in rows
        if rows[code][1]
    }


def raise_query(patient: Patient, by, state: str = QueryState.OPEN, form: str = "patients") -> Query:
    now = timezone.now()
    return Query.objects.create(patient=patient, form=form, state=state, raised_by=by, raised_at=now, updated_at=now)


def test_the_tallies_follow_every_write_and_survive_a_fold():
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    first = make_record(make_patient(a, people["nurse_a"]))
    second = make_record(make_patient(a, people["nurse_a"]))
    other = make_record(make_patient(b, people["nurse_b"]))
    assert tallied() == counted() and counted()[a.code][:2] == (2, 2 * counted()[b.code][1])

    coordinator = people["coordinator"]
    asked = [raise_query(second, coordinator), raise_query(second, coordinator), raise_query(other, coordinator)]
    raise_query(first, coordinator, QueryState.ANSWERED)
    assert tallied() == counted() and counted()[a.code][2:] == (2, 1, 1)
    Query.objects.filter(pk=asked[0].pk).update(state=QueryState.ANSWERED)  # answered
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.CLOSED)  # closed
    assert tallied() == counted() and counted()[a.code][2:] == (0, 2, 0)
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.REOPENED)  # re-opened
    assert tallied() == counted()

    PriorBiologic.objects.filter(patient=first).first().delete()  # a form row removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at="2026-01-01T00:00:00Z")  # a patient removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at=None)  # and restored
    assert tallied() == counted()
    Patient.all_objects.filter(pk=other.pk).update(centre=a)  # moved to another centre
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at="2026-01-01T00:00:00Z")
    raise_query(second, coordinator)  # raised while the patient is removed
    assert tallied() == counted()
    Patient.all_objects.filter(pk=second.pk).update(deleted_at=None)
    assert tallied() == counted() and counted()[a.code][4] == 2
    Query.objects.update(state=QueryState.OPEN)  # one statement, several patients
    assert tallied() == counted() and counted()[a.code][4] == 3
    Query.objects.filter(patient=first).delete()
    assert tallied() == counted()
    Patient.all_objects.get(pk=first.pk).delete()  # deleted with its rows (the ORM's cascade)
    assert tallied() == counted()
    assert counted()[a.code][4] == 2

    assert CrfRowTally.objects.count() > 2
    assert monitoring.fold_tallies() == len({a.code, b.code})
    assert tallied() == counted()


def test_two_writers_raising_a_patients_first_queries_at_once_count_it_once():
    """The first waiting query of a patient raised in two transactions at once (a coordinator's and
    the data checks'): the second waits for the first's count of the patient and sees it, so the
    patient is counted once, not once per writer."""
    people = personae()
    centre, coordinator = people["centre_a"], people["coordinator"]
    patient = make_patient(centre, people["nurse_a"])
    holding, release = threading.Event(), threading.Event()
    failures = []

    def first() -> None:
        try:
            with transaction.atomic():
                raise_query(patient, coordinator)
                holding.set()
                release.wait(30)
        except Exception as error:  # reported below, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    def second() -> None:
        try:
            raise_query(patient, coordinator)
        except Exception as error:
            failures.append(error)
        finally:
            connection.close()

    writers = [threading.Thread(target=first), threading.Thread(target=second)]
    writers[0].start()
    assert holding.wait(30)
    writers[1].start()
    deadline = time.monotonic() + 30
    waited = False
    with connection.cursor() as cursor:  # until the second writer waits for the first's count
        while not waited and time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            waited = cursor.fetchone()[0] > 0
    release.set()
    for writer in writers:
        writer.join(30)

    assert waited and not failures
    assert Query.objects.filter(patient=patient).count() == 2
    assert counted()[centre.code][4] == 1
    assert tallied()[centre.code][4] == 1


def shown_total(client: Client, url: str, noun: str) -> int:
    """The total a list page prints under its table ("12 patients", "3 queries")."""
    response = client.get(url)
    assert response.status_code == 200
    found = re.search(rf"(\d+) {noun}", response.content.decode())
    return int(found.group(1)) if found else 0


def test_the_lists_totals_read_from_the_tallies_equal_a_count():
    """The patient list's and the query list's totals (the unfiltered lists and the "with open
    queries" filter count from the tallies) say what a count says, through enrolment, a patient's
    removal and move, and queries answered and closed."""
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    nurse, coordinator = login_as(Client(), people["nurse_a"]), login_as(Client(), people["coordinator"])
    patients = [make_patient(a, people["nurse_a"]) for _ in range(3)] + [make_patient(b, people["nurse_b"])]
    asked = [raise_query(patient, people["coordinator"], form="patient") for patient in patients[:2]]
    raise_query(patients[3], people["coordinator"], QueryState.ANSWERED, form="patient")

    def check() -> None:
        mine = Patient.objects.filter(centre=a)
        assert shown_total(nurse, "/patients/", "patient") == mine.count()
        assert shown_total(coordinator, "/patients/", "patient") == Patient.objects.count()
        not_closed = Query.objects.exclude(state=QueryState.CLOSED).filter(patient__in=Patient.objects.all())
        assert shown_total(nurse, "/queries/", "quer") == not_closed.filter(patient__in=mine).count()
        assert shown_total(coordinator, "/queries/", "quer") == not_closed.count()
        waiting = "/patients/?filter=open_queries"
        assert shown_total(nurse, waiting, "patient") == with_open(mine).count()
        assert shown_total(coordinator, waiting, "patient") == with_open(Patient.objects.all()).count()

    check()
    assert shown_total(nurse, "/patients/", "patient") == 3
    Query.objects.filter(pk=asked[0].pk).update(state=QueryState.ANSWERED)
    Query.objects.filter(pk=asked[1].pk).update(state=QueryState.CLOSED)
    check()
    Patient.all_objects.filter(pk=patients[0].pk).update(deleted_at="2026-01-01T00:00:00Z")  # removed
    check()
    Patient.all_objects.filter(pk=patients[3].pk).update(centre=a)  # moved to the nurse's centre
    check()
    monitoring.fold_tallies()
    check()
    assert shown_total(nurse, "/patients/", "patient") == 3
    # A search, a filter and another state are counted: only the unfiltered totals are tallied.
    assert shown_total(nurse, f"/patients/?q={patients[1].study_id}", "patient") == 1
    assert shown_total(nurse, "/queries/?state=closed", "quer") == 1


def test_the_whole_lists_pages_read_from_the_tallies_hold_every_patient_once(monkeypatch):
    """The list with no search and no filter pages by the centres' tallies, each page read within
    the centres it falls in (monitoring.CentrePaginator): walked page by page, by the coordinator
    across centres and by a nurse in hers, it shows every patient not removed once, in study ID
    order, pages spanning two centres included, after a removal and a restore."""
    monkeypatch.setattr("cohort.views.PAGE_SIZE", 3)
    people = personae()
    a, b = people["centre_a"], people["centre_b"]
    nurse, coordinator = login_as(Client(), people["nurse_a"]), login_as(Client(), people["coordinator"])
    enrolled = [make_patient(a, people["nurse_a"]) for _ in range(5)] + [
        make_patient(b, people["nurse_b"]) for _ in range(4)
    ]
    Patient.all_objects.filter(pk=enrolled[1].pk).update(deleted_at="2026-01-01T00:00:00Z")
    Patient.all_objects.filter(pk=enrolled[6].pk).update(deleted_at="2026-01-01T00:00:00Z")

    def walked(client: Client) -> list[str]:
        shown, number = [], 1
        while True:
            page = client.get(f"/patients/?page={number}").content.decode()
            shown += re.findall(r'class="fw-semibold">([A-Z0-9]+-\d+)</a>', page)
            if f"?page={number + 1}" not in page:
                return shown
            number += 1

    def expected(patients) -> list[str]:
        return sorted(patients.values_list("study_id", flat=True))

    assert walked(coordinator) == expected(Patient.objects.all()) and len(walked(coordinator)) == 7
    assert walked(nurse) == expected(Patient.objects.filter(centre=a)) and len(walked(nurse)) == 4
    Patient.all_objects.filter(pk=enrolled[1].pk).update(deleted_at=None)  # restored
    assert walked(coordinator) == expected(Patient.objects.all()) and len(walked(coordinator)) == 8
    monitoring.fold_tallies()
    assert walked(nurse) == expected(Patient.objects.filter(centre=a)) and len(walked(nurse)) == 5
    too_far = coordinator.get("/patients/?page=99").content.decode()  # the last page, as Paginator.get_page
    assert re.findall(r'class="fw-semibold">([A-Z0-9]+-\d+)</a>', too_far) == expected(Patient.objects.all())[-2:]
