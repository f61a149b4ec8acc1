"""Data queries (SPEC section 10; issue 12 item 1): a coordinator raises a query on a field, the
site's nurse answers (with a data change citing it, or without one), the coordinator closes or
re-opens; messages are append-only with author and UTC time; the list filters and exports; another
centre's query answers 404. Through HTTP, checking the database afterwards."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from cohort.models import Assessment, Query, QueryEvent, QueryMessage
from tests.base import login_as, make_patient, make_record

pytestmark = pytest.mark.django_db


def raise_on_crp(client, patient, text="CRP 900 mg/L: typo for 9.0?"):
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    return client.post(
        reverse("cohort:query-raise", args=[patient.study_id]),
        {
            "form": "week_8",
            "row": week_8.pk,
            "field": "crp_mg_l",
            "text": text,
            "next": f"/patients/{patient.study_id}/",
        },
    )


def form_page(client, patient, key="week_8") -> str:
    return client.get(reverse("cohort:form", args=[patient.study_id, key])).content.decode()


def form_data(page_form) -> dict:
    """The week-8 form's current values, as the browser would post them back."""
    data = {}
    for name, field in page_form.fields.items():
        value = page_form.initial.get(name, field.initial)
        if value is not None:
            data[name] = value
    return data


def current_values(client, patient, key="week_8") -> dict:
    response = client.get(reverse("cohort:form", args=[patient.study_id, key]))
    return {k: v for k, v in form_data(response.context["form"]).items() if k != "reason_for_change"}


def test_raise_answer_with_a_change_and_close(client, patient, people):
    login_as(client, people["coordinator"])
    response = raise_on_crp(client, patient)
    assert response.status_code == 302
    query = Query.objects.get()
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    assert (query.form, query.row_id, query.field, query.state, query.raised_by.username) == (
        "week_8",
        week_8.pk,
        "crp_mg_l",
        "open",
        "coordinator",
    )
    assert query.raised_at.tzinfo is not None

    # The nurse sees the question beside the field and answers with a corrected value.
    client.force_login(people["nurse_a"])
    page = form_page(client, patient)
    assert f'data-query="{query.pk}"' in page and "CRP 900 mg/L: typo for 9.0?" in page
    data = current_values(client, patient) | {"crp_mg_l": "9.0", f"answer_{query.pk}": "Typo, source says 9.0"}
    response = client.post(reverse("cohort:form", args=[patient.study_id, "week_8"]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    week_8.refresh_from_db()
    query.refresh_from_db()
    assert str(week_8.crp_mg_l) == "9.0" and query.state == "answered"
    # The change's reason for change cites the query, in the audit trail.
    event = week_8.events.order_by("-pgh_id").first()
    assert f"query #{query.pk}" in event.pgh_context.metadata["reason"]
    answer = query.messages.get(action="answer")
    assert (answer.text, answer.author.username, answer.state) == ("Typo, source says 9.0", "nurse_a", "answered")

    # The coordinator closes it.
    login_as(client, people["coordinator"])
    client.post(reverse("cohort:query", args=[query.pk]), {"action": "close", "text": "Thank you."})
    query.refresh_from_db()
    assert query.state == "closed"
    assert list(query.messages.values_list("action", "state")) == [
        ("raise", "open"),
        ("answer", "answered"),
        ("close", "closed"),
    ]
    assert QueryEvent.objects.filter(pgh_obj_id=query.pk).count() == 3  # raised, answered, closed: audited


def test_an_answer_without_a_data_change_writes_no_data(client, patient, people):
    login_as(client, people["coordinator"])
    raise_on_crp(client, patient)
    query = Query.objects.get()
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    client.force_login(people["nurse_a"])
    data = current_values(client, patient) | {f"answer_{query.pk}": "Checked: 900 is in the lab report."}
    client.post(reverse("cohort:form", args=[patient.study_id, "week_8"]), data)
    query.refresh_from_db()
    assert query.state == "answered"
    assert Assessment.objects.get(pk=week_8.pk).version == week_8.version  # nothing written

    # ... also from the query's own page.
    login_as(client, people["coordinator"])
    client.post(
        reverse("cohort:query", args=[query.pk]), {"action": "reopen", "text": "Please attach the report date."}
    )
    client.force_login(people["nurse_a"])
    client.post(reverse("cohort:query", args=[query.pk]), {"action": "answer", "text": "Report of 2022-04-26."})
    query.refresh_from_db()
    assert query.state == "answered"
    assert [m.action for m in query.messages.all()] == ["raise", "answer", "reopen", "answer"]


def test_who_may_do_what(client, patient, people):
    login_as(client, people["coordinator"])
    raise_on_crp(client, patient)
    query = Query.objects.get()
    url = reverse("cohort:query", args=[query.pk])

    client.force_login(people["nurse_a"])  # the site answers, never closes or raises
    assert client.post(url, {"action": "close", "text": "done"}).status_code == 403
    assert raise_on_crp(client, patient).status_code == 403
    client.force_login(people["nurse_b"])  # another centre: the query does not exist for her
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "answer", "text": "x"}).status_code == 404
    login_as(client, people["coordinator"])  # coordinators do not answer for the site
    assert client.post(url, {"action": "answer", "text": "x"}).status_code == 403
    assert Query.objects.get().state == "open" and QueryMessage.objects.count() == 1


def test_bad_input_is_refused_with_a_message_and_writes_nothing(client, patient, people):
    login_as(client, people["coordinator"])
    response = raise_on_crp(client, patient, text="   ")
    assert response.status_code == 302 and not Query.objects.exists()
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    for bad in ({"field": "no_such_field"}, {"form": "nope"}, {"row": 999999}):
        data = {"form": "week_8", "row": week_8.pk, "field": "crp_mg_l", "text": "?"} | bad
        assert client.post(reverse("cohort:query-raise", args=[patient.study_id]), data).status_code == 302
    assert not Query.objects.exists()
    raise_on_crp(client, patient)
    query = Query.objects.get()
    response = client.post(reverse("cohort:query", args=[query.pk]), {"action": "close", "text": ""}, follow=True)
    assert "Write a message." in response.content.decode()
    assert Query.objects.get().state == "open"
    # Re-opening an open query: the state machine refuses, saying so.
    response = client.post(reverse("cohort:query", args=[query.pk]), {"action": "reopen", "text": "x"}, follow=True)
    assert "nothing was changed" in response.content.decode()
    assert QueryMessage.objects.count() == 1


def test_nurses_see_counts_badges_and_only_their_centres_queries(client, patient, people):
    other = make_record(make_patient(people["centre_b"], people["nurse_b"]))
    login_as(client, people["coordinator"])
    raise_on_crp(client, patient)
    raise_on_crp(client, other)
    client.force_login(people["nurse_a"])
    casebook = client.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()
    assert 'data-queries="1"' in casebook  # the week-8 cell's badge
    listing = client.get(reverse("cohort:query-list")).content.decode()
    assert patient.study_id in listing and other.study_id not in listing
    login_as(client, people["coordinator"])
    listing = client.get(reverse("cohort:query-list")).content.decode()
    assert patient.study_id in listing and other.study_id in listing


def test_the_list_filters_and_exports_csv(client, patient, people):
    other = make_record(make_patient(people["centre_b"], people["nurse_b"]))
    login_as(client, people["coordinator"])
    raise_on_crp(client, patient, text="old question")
    raise_on_crp(client, other, text="new question")
    old, new = Query.objects.order_by("raised_at")
    Query.objects.filter(pk=old.pk).update(raised_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # long ago
    client.post(reverse("cohort:query", args=[new.pk]), {"action": "close", "text": "ok"})

    def listed(**params) -> list[int]:
        response = client.get(reverse("cohort:query-list"), params)
        return [row["query"].pk for row in response.context["rows"]]

    assert listed() == [old.pk]  # default: not closed
    assert listed(state="") == [old.pk, new.pk]
    assert listed(state="closed") == [new.pk]
    assert listed(state="", centre="UMCU") == [new.pk]
    assert listed(state="", age=30) == [old.pk]
    assert listed(state="", form="week_20") == []
    assert listed(state="", rule="system") == []

    response = client.get(reverse("cohort:query-list"), {"state": "", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["query"], r["study_id"], r["state"], r["field"]) for r in rows] == [
        (str(old.pk), patient.study_id, "open", "crp_mg_l"),
        (str(new.pk), other.study_id, "closed", "crp_mg_l"),
    ]
    assert rows[0]["raised_at_utc"] == "2026-01-01T00:00:00Z" and rows[1]["last_message"] == "ok"
    coordinator = people["coordinator"].username
    assert [(r["centre"], r["raised_by"]) for r in rows] == [("AMC", coordinator), ("UMCU", coordinator)]
    assert f"· {coordinator}</td>" in client.get(reverse("cohort:query-list")).content.decode()  # who raised it

    client.force_login(people["nurse_b"])
    response = client.get(reverse("cohort:query-list"), {"state": "", "format": "csv"})
    assert [r["study_id"] for r in csv.DictReader(io.StringIO(response.content.decode()))] == [other.study_id]


def test_queries_are_in_the_audit_trail(client, patient, people):
    from cohort import audit

    login_as(client, people["coordinator"])
    raise_on_crp(client, patient)
    trail = audit.entries([patient.pk])
    kinds = {(entry["model"], entry["action"]) for entry in trail}
    assert {("Query", "insert"), ("QueryMessage", "insert")} <= kinds
    message = next(entry for entry in trail if entry["model"] == "QueryMessage")
    assert message["user"] == "coordinator" and message["study_id"] == patient.study_id


def test_the_query_list_and_a_form_page_run_the_same_queries_for_1_and_6_queries(client, patient, people):
    from tests.test_query_counts import queries_for

    login_as(client, people["coordinator"])
    raise_on_crp(client, patient)
    form_url = reverse("cohort:form", args=[patient.study_id, "week_8"])
    one = (queries_for(client, reverse("cohort:query-list")), queries_for(client, form_url))
    for n in range(5):
        raise_on_crp(client, patient, text=f"and {n}?")
        client.post(reverse("cohort:query", args=[Query.objects.first().pk]), {"action": "close", "text": "ok"})
    six = (queries_for(client, reverse("cohort:query-list") + "?state="), queries_for(client, form_url))
    assert Query.objects.count() == 6
    assert [len(sql) for sql in six] == [len(sql) for sql in one], "\n".join(six[0] + six[1])


def test_queries_are_in_the_casebook_pdf_and_the_audit_export(client, patient, people, tmp_path):
    from reports import exports, pdf
    from tests.test_pdf import flat, pdf_pages

    login_as(client, people["coordinator"])
    raise_on_crp(client, patient, text="Is 900 right?")
    query = Query.objects.get()
    client.post(reverse("cohort:query", args=[query.pk]), {"action": "close", "text": "Checked at the visit."})
    message = query.messages.get(action="close")

    out = tmp_path / "casebook.pdf"
    pdf.render_casebook(patient, out)
    text = flat(pdf_pages(out))
    assert "Is 900 right?" in text and "Checked at the visit." in text
    at = message.at.astimezone(dt.UTC)
    assert f"{at.day} {at:%b %Y, %H:%M} UTC" in text

    rows = exports.audit_rows(type(patient).objects.filter(pk=patient.pk))
    header = exports.AUDIT_HEADER
    found = [dict(zip(header, row, strict=True)) for row in rows]
    texts = [r for r in found if r["form"] == "query_message" and r["field"] == "text"]
    assert [r["new"] for r in texts] == ["Is 900 right?", "Checked at the visit."]
    states = [(r["old"], r["new"]) for r in found if r["form"] == "query" and r["field"] == "state"]
    assert states[-1] == ("open", "closed") and all(r["user"] == "coordinator" for r in texts)


def test_an_old_automatic_query_is_not_reopened_beside_a_newer_one_on_its_cause(client, patient, people):
    from cohort import queries

    def system_query():
        return queries.raise_query(
            patient=patient,
            form_key="week_20",
            row_id=None,
            field="",
            text="Overdue.",
            by=None,
            rule="overdue_visit",
            cause=f"overdue:{patient.pk}:week_20",
        )

    old = system_query()
    queries.act(query=old, action="close", text="Closed automatically.", by=None)
    newer = system_query()
    assert newer.pk != old.pk
    login_as(client, people["coordinator"])
    response = client.post(reverse("cohort:query", args=[old.pk]), {"action": "reopen", "text": "?"}, follow=True)
    assert f"Query #{newer.pk} on the same cause is open" in response.content.decode()
    assert Query.objects.get(pk=old.pk).state == "closed"


def test_an_automatic_query_reads_in_the_readers_language_and_is_stored_in_english(client, patient, people):
    from cohort import data_checks, queries
    from cohort.models import UserProfile

    wording = queries.Wording(data_checks.OVERDUE, {"visit": "week_20", "low": 112, "high": 168, "end": "2022-08-16"})
    query = queries.raise_query(
        patient=patient,
        form_key="week_20",
        row_id=None,
        field="",
        text=wording,
        by=None,
        rule="overdue_visit",
        cause=f"overdue:{patient.pk}:week_20",
    )
    stored = query.messages.get()
    assert stored.text.startswith("The week 20 visit is overdue: its window (days 112 to 168")
    client.force_login(people["nurse_a"])
    UserProfile.objects.update_or_create(user=people["nurse_a"], defaults={"language": "nl"})
    page = client.get(reverse("cohort:query", args=[query.pk]), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "De visite week 20 is over tijd: het venster (dag 112 tot 168" in page
    listing = client.get(reverse("cohort:query-list"), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "De visite week 20 is over tijd" in listing
    queries.act(
        query=query, action="close", text=queries.Wording(data_checks.CLOSED, {"why": "the visit was entered"}), by=None
    )
    page = client.get(reverse("cohort:query", args=[query.pk]), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "Automatisch gesloten: de visite is ingevoerd." in page
