"""Investigator signatures (SPEC section 10; 21 CFR 11.50, 11.70, 11.200): an investigator of the
centre signs a complete casebook without open queries by entering the password (and TOTP code)
again; a later change, through any path, makes the signature no longer valid, and the history keeps
it. Through HTTP, checking the database afterwards."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort import crf, locks, queries, signatures
from cohort.audit import entries
from cohort.choices import Role
from cohort.csvformat import export_cohort
from cohort.models import SIGNATURE_MEANING, Assessment, FollowUp, Patient, Signature
from cohort.services import patient_soft_delete
from tests.base import login_as, make_patient, make_record, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests/base.make_user's


def complete(patient: Patient) -> Patient:
    """Every form row of the patient marked complete: a casebook ready to sign."""
    for form in crf.FILES.values():
        rows = Patient.objects.filter(pk=patient.pk) if form.model is Patient else form.model.objects
        rows.filter(**({} if form.model is Patient else {"patient": patient})).update(form_status="complete")
    return patient


@pytest.fixture
def investigator(people):
    """Centre A's investigator, signed in as after a full login (login_as: with a TOTP device)."""
    return make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)


@pytest.fixture
def ready(patient):
    return complete(patient)


def code_of(user) -> str:
    """A code of the user's authenticator app not used before: the current one, or the next (a code
    is accepted once, and one step ahead is within the device's tolerance)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if totp.t() <= device.last_t:
        totp.drift += 1
    return f"{totp.token():0{device.digits}d}"


def sign_url(patient: Patient) -> str:
    return reverse("cohort:sign", args=[patient.study_id])


def casebook(client, patient: Patient) -> str:
    return client.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()


def panel_state(client, patient: Patient) -> str:
    page = casebook(client, patient)
    return page.split('id="signature" data-state="', 1)[1].split('"', 1)[0]


def signed(client, investigator, patient: Patient) -> Signature:
    response = client.post(sign_url(patient), {"password": PASSWORD, "otp_token": code_of(investigator)})
    assert response.status_code == 302, response.content.decode()
    return Signature.objects.get(patient=patient, invalidated_at__isnull=True)


def test_an_investigator_signs_with_password_and_code(client, ready, investigator):
    login_as(client, investigator)
    assert panel_state(client, ready) == "unsigned"
    assert 'id="sign-dialog"' in casebook(client, ready)

    response = client.post(sign_url(ready), {"password": PASSWORD, "otp_token": code_of(investigator)})

    assert response.status_code == 302 and response["Location"] == reverse("cohort:patient-detail", args=["AMC-001"])
    signature = Signature.objects.get()
    assert (signature.patient, signature.signed_by, signature.meaning) == (ready, investigator, SIGNATURE_MEANING)
    assert signature.data_hash == signatures.data_hash(signatures.record_of(ready))
    assert len(signature.data_hash) == 64 and signature.valid
    assert signature.signed_at.utcoffset() == dt.timedelta(0)
    assert abs(timezone.now() - signature.signed_at) < dt.timedelta(minutes=1)
    assert signatures.current(ready) == signature
    page = casebook(client, ready)
    assert 'data-state="valid"' in page and "by investigator_a on " in page and " UTC" in page
    assert SIGNATURE_MEANING in page
    audited = [entry for entry in entries([ready.pk]) if entry["model"] == "Signature"]
    assert [(e["action"], e["user"], e["reason"], e["source"]) for e in audited] == [
        ("insert", "investigator_a", SIGNATURE_MEANING, "sign")
    ]


def test_the_sign_page_works_without_javascript(client, ready, investigator):
    login_as(client, investigator)
    page = client.get(sign_url(ready)).content.decode()
    assert SIGNATURE_MEANING in page and 'name="password"' in page and 'name="otp_token"' in page
    assert Signature.objects.count() == 0  # a GET signs nothing


def test_an_account_without_a_second_factor_signs_with_the_password(client, ready, investigator):
    client.force_login(investigator)  # no TOTP device: investigators need none
    assert 'name="otp_token"' not in client.get(sign_url(ready)).content.decode()
    assert client.post(sign_url(ready), {"password": PASSWORD}).status_code == 302
    assert Signature.objects.get().signed_by == investigator


def test_a_wrong_password_or_code_signs_nothing(client, ready, investigator):
    login_as(client, investigator)
    response = client.post(sign_url(ready), {"password": "wrong", "otp_token": code_of(investigator)})
    assert response.status_code == 200
    assert "The password is not correct. Nothing was signed." in response.content.decode()
    good = int(code_of(investigator))
    response = client.post(sign_url(ready), {"password": PASSWORD, "otp_token": f"{(good + 1) % 1_000_000:06d}"})
    assert "That code is not valid." in response.content.decode()
    response = client.post(sign_url(ready), {"password": PASSWORD, "otp_token": ""})
    assert response.status_code == 200
    assert not Signature.objects.exists()
    assert not [entry for entry in entries([ready.pk]) if entry["model"] == "Signature"]


def test_a_wrong_password_counts_toward_the_login_lockout(client, ready, investigator):
    from axes.models import AccessAttempt

    login_as(client, investigator)
    client.post(sign_url(ready), {"password": "wrong", "otp_token": code_of(investigator)})
    assert AccessAttempt.objects.get(username="investigator_a").failures_since_start == 1


def test_an_incomplete_form_or_an_open_query_blocks_signing(client, patient, investigator, people):
    login_as(client, investigator)
    page = casebook(client, patient)  # make_record's forms are not marked complete
    assert "Assessment week 8 is not marked complete." in page and 'id="sign-button" disabled' in page
    response = client.post(sign_url(patient), {"password": PASSWORD, "otp_token": code_of(investigator)})
    assert "The casebook cannot be signed yet:" in response.content.decode()

    complete(patient)
    query = queries.raise_query(
        patient=patient, form_key="week_8", row_id=None, field="", text="CRP?", by=people["coordinator"]
    )
    response = client.post(sign_url(patient), {"password": PASSWORD, "otp_token": code_of(investigator)})
    assert "1 query is not closed." in response.content.decode()
    assert not Signature.objects.exists()

    queries.act(query=query, action="close", text="fine", by=people["coordinator"])
    signed(client, investigator, patient)


def test_no_adverse_events_or_a_visit_after_discontinuation_are_not_missing_forms(people):
    patient = complete(make_record(make_patient(people["centre_a"], people["nurse_a"])))
    patient.adverse_events.all().delete()
    FollowUp.objects.filter(patient=patient).update(adverse_events_any="")
    record = signatures.record_of(patient)
    assert signatures.blockers(record, []) == ["Adverse events is not started."]
    FollowUp.objects.filter(patient=patient).update(adverse_events_any="no")
    assert signatures.blockers(signatures.record_of(patient), []) == []

    Assessment.objects.filter(patient=patient, visit="week_52").delete()
    FollowUp.objects.filter(patient=patient).update(
        status="discontinued",
        discontinuation_date=dt.date(2022, 9, 1),
        discontinuation_reason="loss_of_response",
        last_follow_up_date=dt.date(2022, 9, 1),
    )
    assert signatures.blockers(signatures.record_of(patient), []) == []


def test_only_the_centres_investigators_sign(client, ready, people):
    for persona in ("nurse_a", "coordinator", "admin"):
        login_as(client, people[persona])
        assert client.get(sign_url(ready)).status_code == 403, persona
        assert client.post(sign_url(ready), {"password": PASSWORD}).status_code == 403, persona
        assert 'id="sign-button"' not in casebook(client, ready)
    other = make_user("investigator_b", centre=people["centre_b"], role=Role.INVESTIGATOR)
    login_as(client, other)
    assert client.get(sign_url(ready)).status_code == 404
    assert client.post(sign_url(ready), {"password": PASSWORD, "otp_token": code_of(other)}).status_code == 404
    assert not Signature.objects.exists()


def week_8_form(row: Assessment, **changes) -> dict:
    names = [f.name for f in crf.entered_fields(Assessment)]
    data = {name: "" if getattr(row, name) is None else str(getattr(row, name)) for name in names}
    return {**data, "version": row.version, "reason_for_change": "typo", **changes}


def test_a_change_on_the_web_makes_the_signature_no_longer_valid_and_the_history_keeps_it(
    client, ready, investigator, people
):
    login_as(client, investigator)
    first = signed(client, investigator, ready)
    nurse = login_as(type(client)(), people["nurse_a"])
    week_8 = Assessment.objects.get(patient=ready, visit="week_8")

    response = nurse.post(reverse("cohort:form", args=[ready.study_id, "week_8"]), week_8_form(week_8, crp_mg_l="9"))

    assert response.status_code == 302
    first.refresh_from_db()
    assert not first.valid and first.invalidated_because == signatures.CHANGED_AFTER_SIGNING
    assert signatures.current(ready) is None
    page = casebook(client, ready)
    assert 'data-state="invalid"' in page and "needs signing again" in page
    assert "casebook changed after signing" in page
    # The invalidation is audited with the change's who and why.
    invalidated = [e for e in entries([ready.pk]) if e["model"] == "Signature" and e["action"] == "update"]
    assert [(e["user"], e["reason"], e["source"]) for e in invalidated] == [("nurse_a", "typo", "web")]

    second = signed(client, investigator, ready)
    assert [entry.valid for entry in signatures.panel(signatures.record_of(ready), queries=[]).entries] == [
        True,
        False,
    ]
    assert second.data_hash != first.data_hash
    assert 'data-valid="no"' in casebook(client, ready)


def raw(sql: str, params=()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_raw_sql_changes_invalidate_but_a_write_of_the_same_values_does_not(client, ready, investigator):
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    raw("UPDATE cohort_assessment SET crp_mg_l = crp_mg_l, version = version + 1 WHERE patient_id = %s", [ready.pk])
    raw("UPDATE cohort_patient SET smoking = smoking WHERE id = %s", [ready.pk])
    signature.refresh_from_db()
    assert signature.valid and panel_state(client, ready) == "valid"

    raw("UPDATE cohort_assessment SET crp_mg_l = 30 WHERE patient_id = %s AND visit = 'week_20'", [ready.pk])

    signature.refresh_from_db()
    assert signature.invalidated_because == signatures.CHANGED_AFTER_SIGNING
    assert panel_state(client, ready) == "invalid"


@pytest.mark.parametrize("table", ["cohort_adverseevent", "cohort_priorbiologic"])
def test_a_row_removed_or_added_by_raw_sql_invalidates(client, ready, investigator, table):
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    raw(f"DELETE FROM {table} WHERE id = (SELECT min(id) FROM {table} WHERE patient_id = %s)", [ready.pk])
    signature.refresh_from_db()
    assert not signature.valid


def test_the_import_invalidates_the_signature(client, ready, investigator, tmp_path):
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    export_cohort(tmp_path)
    call_command("import_cohort", str(tmp_path), stdout=StringIO())  # the same data: nothing written
    signature.refresh_from_db()
    assert signature.valid
    path = tmp_path / "assessments.csv"
    path.write_text(path.read_text().replace(",4.5,", ",5.5,", 1), encoding="utf-8")

    call_command("import_cohort", str(tmp_path), stdout=StringIO())

    signature.refresh_from_db()
    assert not signature.valid and panel_state(client, ready) == "invalid"
    update = [e for e in entries([ready.pk]) if e["model"] == "Signature" and e["action"] == "update"]
    assert [e["source"] for e in update] == ["import_cohort"]


def test_removing_the_patient_invalidates(client, ready, investigator, people):
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    patient_soft_delete(patient=ready, by=people["nurse_a"], reason="entered twice")
    signature.refresh_from_db()
    assert not signature.valid


def test_monitoring_is_not_a_change_of_the_casebook(client, ready, investigator, people):
    """Flag confirmations, queries, verification marks and locks change no casebook data."""
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    coordinator = login_as(type(client)(), people["coordinator"])
    coordinator.post(reverse("cohort:verify", args=[ready.study_id]), {"column": "baseline"})
    query = queries.raise_query(
        patient=ready, form_key="week_8", row_id=None, field="", text="CRP?", by=people["coordinator"]
    )
    queries.act(query=query, action="close", text="fine", by=people["coordinator"])
    lock, _new = locks.lock(by=people["coordinator"], reason="freeze", patient=ready)
    locks.unlock(lock=lock, by=people["coordinator"], reason="thaw")
    signature.refresh_from_db()
    assert signature.valid and panel_state(client, ready) == "valid"


def test_a_change_the_triggers_missed_shows_by_the_hash_and_signing_again_replaces_it(client, ready, investigator):
    login_as(client, investigator)
    signature = signed(client, investigator, ready)
    # As if a change had committed while the signature was written (the trigger saw no signature).
    Signature.objects.filter(pk=signature.pk).update(data_hash="0" * 64)
    assert panel_state(client, ready) == "invalid"
    assert "the casebook&#x27;s data differ from the signed data" in casebook(client, ready)
    assert signatures.current(ready) is None

    again = signed(client, investigator, ready)

    signature.refresh_from_db()
    assert signature.invalidated_because == signatures.DATA_DIFFER and again.valid


def test_a_signed_casebook_is_not_signed_twice(client, ready, investigator):
    login_as(client, investigator)
    signed(client, investigator, ready)
    assert 'id="sign-button"' not in casebook(client, ready)
    response = client.post(sign_url(ready), {"password": PASSWORD, "otp_token": code_of(investigator)})
    assert "This casebook is signed already" in response.content.decode()
    assert Signature.objects.count() == 1


def test_the_hash_is_stable_and_follows_every_entered_value(ready):
    record = signatures.record_of(ready)
    assert signatures.data_hash(record) == signatures.data_hash(signatures.record_of(ready))
    week_8 = next(row for row in record.assessments if row.visit == "week_8")
    week_8.crp_mg_l = week_8.crp_mg_l + 1
    assert signatures.data_hash(record) != signatures.data_hash(signatures.record_of(ready))


def test_dutch_for_the_investigator(client, ready, investigator):
    from cohort.models import UserProfile

    UserProfile.objects.update_or_create(user=investigator, defaults={"language": "nl"})
    login_as(client, investigator)
    page = client.get(reverse("cohort:patient-detail", args=[ready.study_id]), HTTP_ACCEPT_LANGUAGE="nl")
    text = page.content.decode()
    assert "Casebook ondertekenen" in text and "niet ondertekend" in text
    assert "Ik bevestig dat de gegevens in dit casebook volledig en juist zijn." in text


def test_the_casebook_pdf_shows_the_signature_and_its_history(client, ready, investigator, tmp_path):
    import subprocess

    from reports.pdf import render_casebook

    login_as(client, investigator)
    signed(client, investigator, ready)
    raw("UPDATE cohort_assessment SET crp_mg_l = 30 WHERE patient_id = %s AND visit = 'week_20'", [ready.pk])
    signed(client, investigator, ready)
    render_casebook(ready, tmp_path / "casebook.pdf")
    text = subprocess.run(["pdftotext", str(tmp_path / "casebook.pdf"), "-"], capture_output=True, text=True).stdout
    section = " ".join(text.split("Investigator signature", 1)[1].split("Forms", 1)[0].split())
    assert "Signed by investigator_a on " in section and SIGNATURE_MEANING in section, section
    assert "casebook changed after signing" in section


def test_the_patient_list_shows_who_is_signed_and_filters_the_not_signed(client, ready, investigator, people):
    other = make_patient(people["centre_a"], people["nurse_a"])
    login_as(client, investigator)
    signed(client, investigator, ready)

    def listed(**params) -> dict[str, bool]:
        rows = client.get(reverse("cohort:patient-list"), params).context["rows"]
        return {row.patient.study_id: row.signed for row in rows}

    assert listed() == {ready.study_id: True, other.study_id: False}
    assert listed(filter="not_signed") == {other.study_id: False}
    Signature.objects.filter(patient=ready).update(data_hash="0" * 64)  # changed unseen: not signed now
    assert listed()[ready.study_id] is False
    raw("UPDATE cohort_assessment SET crp_mg_l = 30 WHERE patient_id = %s AND visit = 'week_20'", [ready.pk])
    assert listed(filter="not_signed") == {ready.study_id: False, other.study_id: False}
