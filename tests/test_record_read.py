"""A save reads the patient's record in one round trip (services.locked_record: the row lock, then
every form as JSON), and must see exactly what the pages read through the ORM: the same rows in the
same order, the same values of the same types, and the active locks that may cover the patient."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.urls import reverse

from cohort import crf, locks, services
from cohort.models import FlagConfirmation, FollowUp, Patient
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db


def orm_record(patient: Patient) -> crf.PatientRecord:
    prefetched = services.with_forms(Patient.objects.filter(pk=patient.pk)).get()
    return services.patient_record(prefetched, confirmations=False)


def assert_same_rows(read: list, expected: list) -> None:
    assert [(type(row), row.pk) for row in read] == [(type(row), row.pk) for row in expected]
    for row, other in zip(read, expected, strict=True):
        assert not row._state.adding
        for field in type(row)._meta.concrete_fields:
            value, wanted = getattr(row, field.attname), getattr(other, field.attname)
            assert (value, type(value)) == (wanted, type(wanted)), (type(row).__name__, field.name)
            if isinstance(value, dt.datetime):
                assert value.utcoffset() == dt.timedelta(0)


def test_the_locked_record_is_the_record_the_pages_read(django_assert_num_queries):
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    FollowUp.objects.filter(patient=patient).update(discontinuation_date=None, next_therapy="")
    make_record(make_patient(people["centre_a"], people["nurse_a"]))  # another patient's rows stay out

    with transaction.atomic(), django_assert_num_queries(1):
        record, active = services.locked_record(patient.pk)

    expected = orm_record(patient)
    assert_same_rows([record.patient], [expected.patient])
    assert (record.patient.centre.pk, record.patient.centre.code) == (people["centre_a"].pk, "AMC")
    for form in crf.FILES.values():
        assert_same_rows(record.held(form), expected.held(form))
        assert all(row.patient is record.patient for row in record.held(form) if form.model is not Patient)
    assert record.patient.follow_up is record.follow_up
    assert record.confirmed == frozenset()
    assert active == []


def test_the_pages_read_the_same_record_with_its_confirmed_flags_in_one_statement(django_assert_num_queries):
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    make_record(make_patient(people["centre_a"], people["nurse_a"]))  # another patient's rows stay out
    confirmation = FlagConfirmation.objects.create(
        patient=patient,
        form="doses",
        row_id=patient.doses.first().pk,
        field="dose_mg",
        basis="dose_mg=260",
        confirmed_by=people["nurse_a"],
    )
    bare = make_patient(people["centre_a"], people["nurse_a"])

    page_patient = Patient.objects.select_related("centre").get(pk=patient.pk)
    with django_assert_num_queries(1):
        record = services.read_record(page_patient)

    prefetched = services.with_forms(Patient.objects.filter(pk=patient.pk)).get()
    expected = services.patient_record(prefetched)
    assert record.patient is page_patient
    for form_ in crf.FILES.values():
        assert_same_rows(record.held(form_), expected.held(form_))
        assert all(row.patient is page_patient for row in record.held(form_) if form_.model is not Patient)
    assert page_patient.follow_up is record.follow_up
    assert record.confirmed == expected.confirmed == {confirmation.key}
    assert services.read_record(page_patient, confirmations=False).confirmed == frozenset()
    with django_assert_num_queries(1):
        empty = services.read_record(bare)
    assert [empty.held(form_) for form_ in crf.FILES.values() if form_.model is not Patient] == [[]] * 6
    assert empty.confirmed == frozenset()


def test_a_bare_patient_has_no_rows_and_its_locks_are_read_with_it(django_assert_num_queries):
    people = personae()
    patient = make_patient(people["centre_a"], people["nurse_a"])
    other = make_patient(people["centre_b"], people["nurse_b"])
    own, _new = locks.lock(by=people["coordinator"], reason="SDV", patient=patient)
    locks.lock(by=people["coordinator"], reason="SDV", patient=other)
    centre, _new = locks.lock(by=people["coordinator"], reason="audit", centre=people["centre_b"])

    with transaction.atomic(), django_assert_num_queries(1):
        record, active = services.locked_record(patient.pk)

    assert_same_rows(record.rows(), orm_record(patient).rows())
    assert (record.reinduction, record.follow_up, record.doses) == (None, None, [])
    # The centre lock of another centre is read (all_covering decides what covers): it does not cover.
    assert sorted(lock.pk for lock in active) == sorted([own.pk, centre.pk])
    assert locks.covering(record.patient, among=active).pk == own.pk


def test_a_removed_patient_has_no_record():
    people = personae()
    patient = make_patient(people["centre_a"], people["nurse_a"])
    services.patient_soft_delete(patient=patient, by=people["nurse_a"], reason="enrolled twice")

    with transaction.atomic(), pytest.raises(Patient.DoesNotExist):
        services.locked_record(patient.pk)


# A follow-up save through HTTP, pinned (raised only on purpose): 3 are the request itself (session
# read and save; the user with the memberships for the second-factor role check and whether a TOTP
# device exists, cohort.accounts.UserBackend); then the follow-up row with its
# patient, its centre and the user's roles (cohort.access.get_row_for_user), the lock and the record
# in one round trip, and the conditional UPDATE: 6, as bench/form_save.py counts in production.
# Here the test's own transaction makes the service's transaction a savepoint: 2 (the session's
# renewal is one UPDATE of its own, cohort/sessions.py: it was a savepoint too).
FOLLOW_UP_SAVE_QUERIES = 6 + 2


def follow_up_post(follow_up: FollowUp, **changes) -> dict:
    return {
        "status": follow_up.status,
        "last_follow_up_date": follow_up.last_follow_up_date.isoformat(),
        "discontinuation_date": "",
        "discontinuation_reason": "",
        "next_therapy": follow_up.next_therapy,
        "form_status": follow_up.form_status,
        "version": follow_up.version,
        **changes,
    }


def test_a_follow_up_save_runs_a_fixed_number_of_queries(client, django_assert_num_queries):
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    login_as(client, people["nurse_a"])
    url = reverse("cohort:form", args=[patient.study_id, "follow_up"])
    client.get(url)  # per-process caches (content types, translations) out of the count

    follow_up = FollowUp.objects.get(patient=patient)
    with django_assert_num_queries(FOLLOW_UP_SAVE_QUERIES):
        response = client.post(url, follow_up_post(follow_up, next_therapy="vedolizumab"))

    assert response.status_code == 302
    assert FollowUp.objects.get(patient=patient).next_therapy == "vedolizumab"
    assert FollowUp.objects.get(patient=patient).version == follow_up.version + 1


def test_a_refused_save_shows_the_stored_record_not_the_values_typed(client):
    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    login_as(client, people["nurse_a"])
    url = reverse("cohort:form", args=[patient.study_id, "follow_up"])
    follow_up = FollowUp.objects.get(patient=patient)

    response = client.post(url, follow_up_post(follow_up, version=follow_up.version - 1, next_therapy="x"))

    assert response.status_code == 200  # the conflict: shown again, nothing saved
    assert response.context["form"].instance.next_therapy == "x"
    stored = FollowUp.objects.get(patient=patient)
    assert (stored.next_therapy, stored.version) == (follow_up.next_therapy, follow_up.version)
    # The casebook cell and the flags of the page are the stored record's: the patient does not
    # hold the form's changed row as its own.
    assert response.context["patient"]._state.fields_cache.get("follow_up") is not response.context["form"].instance


def test_the_row_query_composed_once_answers_each_user_and_visit_with_their_own():
    """cohort.access runs one compiled statement per form for every request of the process: the
    values of each call (study ID, user, visit) must be the ones it runs with."""
    from django.contrib.auth.models import User

    from cohort import access
    from cohort.models import Assessment

    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    other = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    visits = list(Assessment.objects.filter(patient=patient).order_by("pk").values_list("visit", flat=True))
    assert len(visits) >= 2
    for visit in visits:
        row = access.get_row_for_user(
            User.objects.get(pk=people["nurse_a"].pk), patient.study_id, Assessment, visit=visit
        )
        assert_same_rows([row], [Assessment.objects.get(patient=patient, visit=visit)])
        assert (row.patient.pk, row.patient.centre.pk) == (patient.pk, people["centre_a"].pk)
    row = access.get_row_for_user(User.objects.get(pk=people["coordinator"].pk), other.study_id, FollowUp)
    assert_same_rows([row], [FollowUp.objects.get(patient=other)])
    # Another centre's nurse: no row (roles read with it), then with the roles already read.
    nurse_b = User.objects.get(pk=people["nurse_b"].pk)
    assert access.get_row_for_user(nurse_b, patient.study_id, FollowUp) is None
    assert access.get_row_for_user(nurse_b, patient.study_id, FollowUp) is None
    assert access.writable_centre_ids(nurse_b) == {people["centre_b"].pk}


def test_the_saves_update_writes_what_the_orms_update_writes_for_every_form():
    """services._update_row (its statement composed once per process) against the ORM's conditional
    update it replaces: the same values of every form's entered fields, version and time stamp, and
    nothing written over a stale version."""
    people = personae()
    ours = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    theirs = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    when = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
    for form in crf.FILES.values():
        model = form.model
        key = {"pk": ours.pk} if model is Patient else {"patient": ours}
        row = model._base_manager.filter(**key).order_by("pk").first()
        other = model._base_manager.filter(**({"pk": theirs.pk} if model is Patient else {"patient": theirs}))
        other = other.order_by("pk").first()
        fields = crf.entered_fields(model)
        values = {field.attname: getattr(row, field.attname) for field in fields}
        model._base_manager.filter(pk=other.pk, version=other.version).update(
            **values, version=other.version + 1, updated_at=when
        )
        with transaction.atomic():
            assert services._update_row(row, row.version + 5) == 0  # stale: nothing written
            assert services._update_row(row, row.version) == 1
        model._base_manager.filter(pk=row.pk).update(updated_at=when)  # the clock's value aside
        written, expected = model._base_manager.get(pk=row.pk), model._base_manager.get(pk=other.pk)
        for field in [*fields, model._meta.get_field("version"), model._meta.get_field("updated_at")]:
            value, wanted = getattr(written, field.attname), getattr(expected, field.attname)
            assert (value, type(value)) == (wanted, type(wanted)), (model.__name__, field.name)
        assert written.version == row.version + 1
