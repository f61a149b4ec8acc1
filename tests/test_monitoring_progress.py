"""Monitoring progress where people look (SPEC section 10; issue 12 item 6): the patient list's
filters (open queries, not verified, not signed, locked) and its open-query badge, and the figures
per centre on the dashboard and in the cohort report (queries not closed, % of form rows verified,
% of casebooks signed, locks). Through HTTP, on a small cohort whose figures are worked out by hand.

Signatures are written directly (signing is built elsewhere); queries, verification and locks go
through their services."""

from __future__ import annotations

import subprocess

import pytest
from django.urls import reverse
from django.utils import timezone

from cohort import access, crf, locks, monitoring, queries, sdv, services
from cohort.choices import Role
from cohort.models import Assessment, Lock, LockKind, Patient, QueryAction, Signature
from tests.base import login_as, make_patient, make_record, make_user
from tests.test_browser import page  # noqa: F401 - the Chromium fixture
from tests.test_query_counts import queries_for

pytestmark = pytest.mark.django_db


def sign(patient: Patient, by, *, valid: bool = True) -> Signature:
    now = timezone.now()
    return Signature.objects.create(
        patient=patient,
        signed_by=by,
        signed_at=now,
        meaning="I confirm that the data in this casebook are complete and accurate",
        data_hash="0" * 64,
        invalidated_at=None if valid else now,
        invalidated_because="" if valid else "the casebook changed",
    )


def verify_forms(patient: Patient, by, forms=crf.FORMS) -> None:
    record = services.patient_record(services.with_forms(Patient.objects.filter(pk=patient.pk)).get())
    sdv.verify(record=record, forms=list(forms), by=by)


def query_on_week_8(patient: Patient, coordinator, *then: tuple[str, object]):
    """A query on the week-8 CRP, then each (action, user) in turn."""
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    query = queries.raise_query(
        patient=patient, form_key="week_8", row_id=week_8.pk, field="crp_mg_l", text="Please check.", by=coordinator
    )
    for action, user in then:
        query = queries.act(query=query, action=action, text="Done.", by=user)
    return query


@pytest.fixture
def cohort(people):
    return make_cohort(people)


def make_cohort(people) -> dict:
    """Centre A (AMC): AMC-001 verified, signed and its casebook locked; AMC-002 with an open and an
    answered query, nothing verified, its signature no longer valid, one form row locked; AMC-003
    enrolled only (one row, verified) with a re-opened query. Centre B (UMCU), centre-locked:
    UMCU-001 with the baseline verified, signed, a closed and an answered query. 13 rows a record."""
    coordinator, nurse_a, nurse_b = people["coordinator"], people["nurse_a"], people["nurse_b"]
    investigator = make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)
    a1 = make_record(make_patient(people["centre_a"], nurse_a))
    a2 = make_record(make_patient(people["centre_a"], nurse_a))
    a3 = make_patient(people["centre_a"], nurse_a)
    b1 = make_record(make_patient(people["centre_b"], nurse_b))

    verify_forms(a1, coordinator)
    verify_forms(a3, coordinator)
    verify_forms(b1, coordinator, [form for form in crf.FORMS if form.column == "baseline"])
    sign(a1, investigator)
    sign(a2, investigator, valid=False)
    sign(b1, investigator)
    query_on_week_8(a2, coordinator)
    query_on_week_8(a2, coordinator, (QueryAction.ANSWER, nurse_a))
    queries.raise_query(patient=a3, form_key="patient", row_id=a3.pk, field="", text="Consent?", by=coordinator)
    queries.act(query=a3.queries.get(), action=QueryAction.ANSWER, text="Yes.", by=nurse_a)
    queries.act(query=a3.queries.get(), action=QueryAction.REOPEN, text="Date?", by=coordinator)
    query_on_week_8(b1, coordinator, (QueryAction.CLOSE, coordinator))
    query_on_week_8(b1, coordinator, (QueryAction.ANSWER, nurse_b))
    locks.lock(by=coordinator, reason="monitoring visit", patient=a1)
    locks.lock(by=coordinator, reason="one form", row=Assessment.objects.get(patient=a2, visit="week_0"))
    locks.lock(by=coordinator, reason="centre closed", centre=people["centre_b"])
    return {"a1": a1, "a2": a2, "a3": a3, "b1": b1}


def listed(client, **params) -> list[str]:
    response = client.get(reverse("cohort:patient-list"), params)
    assert response.status_code == 200
    return [row.patient.study_id for row in response.context["rows"]]


@pytest.mark.parametrize(
    "filters, expected",
    [
        ([], ["AMC-001", "AMC-002", "AMC-003", "UMCU-001"]),
        (["open_queries"], ["AMC-002", "AMC-003"]),  # open or re-opened; answered or closed only: not
        (["not_verified"], ["AMC-002", "UMCU-001"]),
        (["not_signed"], ["AMC-002", "AMC-003"]),  # an invalidated signature does not count
        (["locked"], ["AMC-001", "UMCU-001"]),  # a casebook or centre lock; a form row's lock: not
        (["open_queries", "not_signed"], ["AMC-002", "AMC-003"]),
        (["not_verified", "locked"], ["UMCU-001"]),
        (["open_queries", "locked"], []),
        (["locked", "no_such_filter"], ["AMC-001", "UMCU-001"]),
    ],
)
def test_each_filter_keeps_exactly_the_patients_in_that_state(client, people, cohort, filters, expected):
    login_as(client, people["coordinator"])

    assert listed(client, filter=filters) == expected


def test_the_locked_filter_keeps_none_while_only_a_row_is_locked_and_all_under_a_study_lock(client, people, cohort):
    login_as(client, people["coordinator"])
    row_lock = Lock.objects.get(kind=LockKind.ROW)
    for active in Lock.objects.filter(unlocked_at__isnull=True).exclude(pk=row_lock.pk):
        locks.unlock(lock=active, by=people["coordinator"], reason="monitoring done")

    assert listed(client, filter=["locked"]) == []
    locks.lock(by=people["coordinator"], reason="database lock")
    assert listed(client, filter=["locked"]) == ["AMC-001", "AMC-002", "AMC-003", "UMCU-001"]


@pytest.mark.parametrize("who", ["coordinator", "nurse_a", "nurse_b"])
def test_each_filters_count_from_its_set_of_ids_is_the_count_of_its_list(client, people, cohort, who):
    """monitoring.filtered_count: the same number as counting the filtered list, for each reader's
    centres; a removed patient in a set (an open query, a valid signature, verified) is not counted."""
    removed = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    verify_forms(removed, people["coordinator"])
    sign(removed, make_user("investigator_r", centre=people["centre_a"], role=Role.INVESTIGATOR))
    query_on_week_8(removed, people["coordinator"])
    services.patient_soft_delete(patient=removed, by=people["nurse_a"], reason="enrolled by mistake")
    user = people[who]
    login_as(client, user)

    for name in monitoring.COUNTED_FROM:
        counted = monitoring.filtered(access.patients_for_user(user), [name]).count()
        assert monitoring.filtered_count(access.readable_centre_ids(user), [name]) == counted, name
        shown = client.get(reverse("cohort:patient-list"), {"filter": name}).context["page"].paginator.count
        assert shown == counted, name
    assert monitoring.filtered_count(None, ["not_verified", "not_signed"]) is None  # several: counted as a list


def test_a_large_set_leaves_the_count_to_the_list(client, people, cohort, monkeypatch):
    login_as(client, people["coordinator"])
    monkeypatch.setattr(monitoring, "SMALL_SET", 1)  # the signed: AMC-001 and UMCU-001

    assert monitoring.filtered_count(None, ["not_signed"]) is None
    assert client.get(reverse("cohort:patient-list"), {"filter": "not_signed"}).context["page"].paginator.count == 2


def test_filters_combine_with_the_search_and_the_count(client, people, cohort):
    login_as(client, people["coordinator"])

    response = client.get(reverse("cohort:patient-list"), {"filter": "open_queries", "q": "amc-002"})

    assert [row.patient.study_id for row in response.context["rows"]] == ["AMC-002"]
    html = response.content.decode()
    assert 'id="filter-open_queries" checked' in html and 'id="filter-locked">' in html
    assert "1 patient" in html
    assert (
        "No patient matches these filters."
        in client.get(reverse("cohort:patient-list"), {"filter": ["open_queries", "locked"]}).content.decode()
    )


def test_a_nurse_filters_only_her_centres_patients(client, people, cohort):
    client.force_login(people["nurse_a"])

    assert listed(client, filter=["locked"]) == ["AMC-001"]
    assert listed(client, filter=["not_verified"]) == ["AMC-002"]
    assert listed(client, filter=["not_signed", "open_queries"]) == ["AMC-002", "AMC-003"]


def test_a_later_change_puts_a_verified_patient_back_among_the_not_verified(client, people, cohort):
    login_as(client, people["coordinator"])
    assert "AMC-003" not in listed(client, filter=["not_verified"])

    Patient.objects.filter(pk=cohort["a3"].pk).update(smoking="current", version=2)  # a later save

    assert "AMC-003" in listed(client, filter=["not_verified"])


def test_the_filters_agree_with_the_lists_own_columns(client, people, cohort):
    """One rule each: the SQL filters keep exactly the patients the list's columns mark."""
    login_as(client, people["coordinator"])
    rows = client.get(reverse("cohort:patient-list")).context["rows"]

    assert listed(client, filter=["locked"]) == [row.patient.study_id for row in rows if row.lock]
    assert listed(client, filter=["open_queries"]) == [row.patient.study_id for row in rows if row.open_queries]
    assert listed(client, filter=["not_verified"]) == [
        row.patient.study_id for row in rows if row.verified[0] < row.verified[1]
    ]


def test_the_list_shows_open_query_counts_linking_to_the_casebook(client, people, cohort):
    query_on_week_8(cohort["a2"], people["coordinator"])  # a second open query
    client.force_login(people["nurse_a"])

    html = client.get(reverse("cohort:patient-list")).content.decode()

    row_of = {sid: html.split(f">{sid}</a>", 1)[1].split("</tr>", 1)[0] for sid in ("AMC-001", "AMC-002", "AMC-003")}
    casebook = reverse("cohort:patient-detail", args=["AMC-002"])
    assert 'data-open-queries="2"' in row_of["AMC-002"] and f'href="{casebook}"' in row_of["AMC-002"]
    assert "2 open" in row_of["AMC-002"]
    assert 'data-open-queries="1"' in row_of["AMC-003"] and "1 open" in row_of["AMC-003"]
    assert 'data-open-queries="0"' in row_of["AMC-001"]


def test_pages_keep_the_filters(client, people):
    for _ in range(27):
        make_patient(people["centre_a"], people["nurse_a"])
    client.force_login(people["nurse_a"])

    first = client.get(reverse("cohort:patient-list"), {"filter": "not_signed"})
    assert first.context["page"].paginator.count == 27
    assert 'href="?filter=not_signed&amp;page=2"' in first.content.decode()
    second = client.get(reverse("cohort:patient-list"), {"filter": "not_signed", "page": 2})
    assert [row.patient.study_id for row in second.context["rows"]] == ["AMC-026", "AMC-027"]


def test_the_filtered_list_runs_the_same_queries_for_1_and_30_patients(client, people):
    from tests.test_query_counts import COORDINATOR_LIST_QUERIES

    login_as(client, people["coordinator"])
    url = reverse("cohort:patient-list") + "?filter=open_queries&filter=not_verified&filter=not_signed"
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    query_on_week_8(patient, people["coordinator"])
    one = queries_for(client, url)
    for _ in range(29):
        patient = make_record(make_patient(people["centre_b"], people["nurse_b"]))
        query_on_week_8(patient, people["coordinator"])

    thirty = queries_for(client, url)

    assert len(client.get(url).context["rows"]) == 25
    assert len(thirty) == len(one) <= COORDINATOR_LIST_QUERIES, "\n".join(thirty)


def test_the_list_speaks_dutch(client, people, cohort):
    client.force_login(people["nurse_a"])

    html = client.get(reverse("cohort:patient-list"), HTTP_ACCEPT_LANGUAGE="nl").content.decode()

    for text in ("met open queries", "niet geverifieerd", "niet ondertekend", "vergrendeld", "1 open"):
        assert text in html, text


# ---------------------------------------------------------------------------------------------
# Per centre: the dashboard and the cohort report

# Worked out by hand from the cohort above.
AMC = {
    "patients": 3,
    "open_queries": 2,  # AMC-002's open one, AMC-003's re-opened one
    "answered_queries": 1,
    "verified": "14/27",  # AMC-001's 13 rows and AMC-003's one, of 13 + 13 + 1
    "verified_percent": "52%",
    "signed": "1/3",
    "signed_percent": "33%",
    "lock": "1 casebook locked",
    "lock_kind": "",
}
UMCU = {
    "patients": 1,
    "open_queries": 0,
    "answered_queries": 1,
    "verified": "7/13",  # the baseline forms: enrolment, 2 prior biologics, 3 doses, re-induction
    "verified_percent": "54%",
    "signed": "1/1",
    "signed_percent": "100%",
    "lock": "centre locked",
    "lock_kind": "centre",
}


def monitoring_of(response) -> dict[str, dict]:
    return {row["code"]: {key: row[key] for key in AMC} for row in response.context["monitoring"]}


def test_the_dashboard_shows_each_centres_monitoring_figures_to_a_coordinator(client, people, cohort):
    login_as(client, people["coordinator"])

    response = client.get(reverse("reports:dashboard", args=["all"]))

    assert monitoring_of(response) == {"AMC": AMC, "UMCU": UMCU}
    html = response.content.decode()
    umcu = html.split('<tr data-centre="UMCU">', 1)[1].split("</tr>", 1)[0]
    assert "7/13" in umcu and "54%" in umcu and "centre locked" in umcu and 'data-lock="centre"' in umcu


def test_a_nurse_sees_her_centres_figures_only(client, people, cohort):
    client.force_login(people["nurse_a"])

    response = client.get(reverse("reports:dashboard-default"))

    assert monitoring_of(response) == {"AMC": AMC}
    assert 'data-centre="UMCU"' not in response.content.decode()


def test_the_dashboards_figures_speak_dutch(client, people, cohort):
    client.force_login(people["nurse_a"])

    html = client.get(reverse("reports:dashboard-default"), HTTP_ACCEPT_LANGUAGE="nl").content.decode()

    for text in ("Datamonitoring", "Beantwoorde queries", "Formulieren geverifieerd", "1 casebook vergrendeld"):
        assert text in html, text


def test_a_study_lock_locks_every_centre(client, people, cohort):
    locks.lock(by=people["coordinator"], reason="database freeze")
    login_as(client, people["coordinator"])

    figures = monitoring_of(client.get(reverse("reports:dashboard", args=["all"])))

    assert {code: (row["lock"], row["lock_kind"]) for code, row in figures.items()} == {
        "AMC": ("study locked", "study"),
        "UMCU": ("study locked", "study"),
    }


def test_the_dashboards_queries_do_not_grow_with_the_patients(client, people, django_assert_max_num_queries):
    from tests.test_dashboard import DASHBOARD_QUERIES

    login_as(client, people["coordinator"])
    url = reverse("reports:dashboard", args=["all"])
    make_record(make_patient(people["centre_a"], people["nurse_a"]))
    one = queries_for(client, url)
    for _ in range(10):
        patient = make_record(make_patient(people["centre_b"], people["nurse_b"]))
        query_on_week_8(patient, people["coordinator"])
        sign(patient, people["coordinator"])
        verify_forms(patient, people["coordinator"])

    eleven = queries_for(client, url)

    assert len(eleven) == len(one), "\n".join(eleven)
    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        client.get(url)


def test_the_completeness_table_gains_the_monitoring_figures_and_their_total(people, cohort):
    from reports import report_context

    context = report_context.cohort_report_context("all")

    centres = {centre["code"]: centre["monitoring"] for centre in context["centres"]}
    assert {code: {key: row[key] for key in AMC} for code, row in centres.items()} == {"AMC": AMC, "UMCU": UMCU}
    total = context["totals"]["monitoring"]
    assert (total["open_queries"], total["answered_queries"]) == (2, 2)
    assert (total["verified"], total["verified_percent"]) == ("21/40", "53%")  # 52.5% rounds half up
    assert (total["signed"], total["signed_percent"]) == ("2/4", "50%")
    assert total["lock"] == "1 centre locked, 1 casebook locked"


def test_the_cohort_report_prints_the_monitoring_table(people, cohort, tmp_path):
    from reports import pdf

    out = tmp_path / "report.pdf"
    pdf.render_cohort_report("all", out)

    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True).stdout
    table = text.split("Enrolment, data completeness and monitoring per centre")[-1].split("Answered", 1)[1]
    assert [line.split() for line in table.splitlines() if line.split()[:1] in (["AMC"], ["UMCU"])] == [
        ["AMC", "2", "1", "14/27", "1/3", "1", "casebook", "locked"],
        ["UMCU", "0", "1", "7/13", "1/1", "centre", "locked"],
    ]
    assert "52%" in table and "54%" in table and "33%" in table
    total = next(line.split() for line in table.splitlines() if line.startswith("All centres"))
    assert total[2:9] == ["2", "2", "21/40", "2/4", "1", "centre", "locked,"]  # the lock text wraps


@pytest.mark.django_db(transaction=True)
def test_in_a_browser_a_coordinator_ticks_filters_and_pages_keep_them(page, live_server):  # noqa: F811
    """Real Chromium (tests/test_browser.py's `page`): the filter boxes belong to the search form,
    so ticking two and searching narrows the list; the dashboard shows the figures. Screenshots go
    to test-output/screenshots/."""
    from django.test import Client
    from playwright.sync_api import expect

    from tests.base import personae
    from tests.test_browser import TIMEOUT_MS, shot

    expect.set_options(timeout=TIMEOUT_MS)
    people = personae()
    make_cohort(people)
    client = login_as(Client(), people["coordinator"])
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )

    page.goto(f"{live_server.url}/patients/")
    page.get_by_label("with open queries").check()
    page.get_by_label("not signed").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#patients tbody tr")).to_have_count(2)
    expect(page.locator("#patients tbody")).to_contain_text("AMC-003")
    expect(page.get_by_label("with open queries")).to_be_checked()
    shot(page, "20-patient-list-filtered")

    page.get_by_label("Search by study ID").fill("AMC-002")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#patients tbody tr")).to_have_count(1)
    assert "filter=open_queries" in page.url and "filter=not_signed" in page.url
    page.get_by_role("link", name="1 open").click()
    expect(page).to_have_url(f"{live_server.url}/patients/AMC-002/")

    page.goto(f"{live_server.url}/outcomes/all/")
    expect(page.locator('#monitoring tr[data-centre="UMCU"]')).to_contain_text("centre locked")
    shot(page, "21-dashboard-monitoring")
