"""`manage.py seed_demo`: the synthetic demo cohort and demo accounts.

The command writes rows in bulk without full_clean(), so these tests are what proves its output
obeys every rule: each seeded record goes through the validation layer.
"""

import datetime as dt
import hashlib
import io
import re
import stat

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from cohort.models import AdverseEvent, Assessment, Centre, FollowUp, Membership, Patient
from cohort.services import SYSTEM_USERNAME, patient_record
from cohort.validators import check, soft_flags

pytestmark = pytest.mark.django_db

CENTRE_CODES = ["AMC", "EMC", "UMCU"]
ACCOUNTS = [
    "admin",
    "coordinator",
    *(f"{role}.{code}" for role in ("nurse", "investigator") for code in ("amc", "emc", "umcu")),
]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def logins_file(tmp_path):
    return tmp_path / "var" / "demo_logins.txt"


def seed(logins_file, *, seed=11, **options) -> str:
    out = io.StringIO()
    call_command(
        "seed_demo",
        patients=60,
        centres=3,
        seed=seed,
        logins_file=str(logins_file),
        stdout=out,
        **options,
    )
    return out.getvalue()


def records():
    return [patient_record(patient) for patient in Patient.objects.select_related("centre")]


def test_it_seeds_patients_accounts_and_memberships(logins_file):
    output = seed(logins_file)

    assert Patient.objects.count() == 60
    assert sorted(Centre.objects.values_list("code", flat=True)) == CENTRE_CODES
    for centre in Centre.objects.all():
        numbers = sorted(int(p.study_id.split("-")[1]) for p in centre.patients.all())
        assert numbers == list(range(1, len(numbers) + 1)), centre.code
        assert all(re.fullmatch(rf"{centre.code}-\d{{3}}", p.study_id) for p in centre.patients.all())

    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    coordinator = User.objects.get(username="coordinator")
    assert coordinator.is_staff and not coordinator.is_superuser
    roles = set(Membership.objects.values_list("user__username", "centre__code", "role"))
    expected = {("admin", code, "admin") for code in CENTRE_CODES}
    expected |= {("coordinator", code, "coordinator") for code in CENTRE_CODES}
    expected |= {(f"nurse.{code.lower()}", code, "nurse") for code in CENTRE_CODES}
    expected |= {(f"investigator.{code.lower()}", code, "investigator") for code in CENTRE_CODES}
    assert roles == expected
    nurse = User.objects.get(username="nurse.amc")
    assert not nurse.is_staff
    assert set(Patient.objects.filter(centre__code="AMC").values_list("created_by", flat=True)) == {nurse.pk}

    # Passwords: printed once and kept in a file only its owner can read.
    assert stat.S_IMODE(logins_file.stat().st_mode) == 0o600
    lines = [line.split() for line in logins_file.read_text().splitlines() if not line.startswith("#")]
    assert sorted(username for _, username, _ in lines) == sorted(ACCOUNTS)
    for role, username, password in lines:
        assert User.objects.get(username=username).check_password(password)
        assert password in output
        assert role in {"admin", "coordinator", "nurse", "investigator"}


def test_it_seeds_records_that_break_no_rule(logins_file):
    seed(logins_file)

    problems = {
        record.patient.study_id: [(type(p.row).__name__, p.field, p.message) for p in check(record)]
        for record in records()
    }
    assert {study_id: found for study_id, found in problems.items() if found} == {}


def test_it_seeds_the_unusual_cases_the_app_must_handle(logins_file):
    seed(logins_file)

    assert FollowUp.objects.filter(status="discontinued").exists()
    assert FollowUp.objects.filter(discontinuation_reason="nonresponse").exists()
    assert FollowUp.objects.filter(status="ongoing").exists()
    assert AdverseEvent.objects.exists()
    assert Assessment.objects.filter(not_done="yes").exists()
    assert Patient.objects.filter(follow_up__isnull=True).exists()
    flags = [flag for record in records() for flag in soft_flags(record)]
    assert any(flag.field == "assessment_date" for flag in flags), "no out-of-window visit"
    assert any(flag.field == "dose_mg" for flag in flags), "no IV dose off the weight band"
    assert Assessment.objects.filter(endoscopy_done="yes", ses_cd__isnull=False).exists()


def test_it_seeds_only_an_empty_database_with_if_empty(logins_file):
    seed(logins_file)
    first = logins_file.read_text()

    output = seed(logins_file, seed=12, if_empty=True)

    assert Patient.objects.count() == 60
    assert "nothing seeded" in output
    assert logins_file.read_text() == first
    for line in first.splitlines()[1:]:
        assert line.split()[2] in output  # the logins are printed again


def test_it_seeds_with_if_empty_when_there_are_no_patients(logins_file):
    seed(logins_file, if_empty=True)

    assert Patient.objects.count() == 60


def test_it_writes_nothing_when_the_plans_cannot_be_drawn(logins_file):
    # The plans are drawn in a second process; its error reaches the command, which leaves nothing.
    with time_machine.travel(dt.datetime(2017, 1, 10, 12, tzinfo=dt.UTC)), pytest.raises(CommandError, match="2016"):
        seed(logins_file)

    assert not Patient.all_objects.exists()
    assert not Centre.objects.filter(code__in=CENTRE_CODES).exists()
    assert not logins_file.exists()


def digest() -> str:
    parts = []
    for record in records():
        patient = record.patient
        parts.append(f"{patient.study_id} {patient.sex} {patient.birth_year} {patient.diagnosis_year}")
        parts += [f"{d.phase} {d.dose_date} {d.dose_mg} {d.weight_kg}" for d in record.doses]
        parts += [f"{b.agent} {b.stop_date}" for b in record.prior_biologics]
        parts += [f"{a.visit} {a.assessment_date} {a.hbi} {a.crp_mg_l}" for a in record.assessments]
        if record.follow_up:
            parts.append(f"{record.follow_up.status} {record.follow_up.last_follow_up_date}")
        parts += [f"{e.onset_date} {e.category}" for e in record.adverse_events]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def test_it_makes_the_same_cohort_from_the_same_seed(logins_file):
    seed(logins_file, seed=5)
    first = digest()
    Patient.all_objects.all().delete()

    seed(logins_file, seed=5)
    assert digest() == first

    Patient.all_objects.all().delete()
    seed(logins_file, seed=6)
    assert digest() != first


def test_it_writes_audit_events_that_name_the_user(logins_file):
    seed(logins_file)

    system = User.objects.get(username=SYSTEM_USERNAME)
    patient_ids = list(Patient.objects.values_list("pk", flat=True))
    events = Patient.pgh_event_model.objects.filter(pgh_obj_id__in=patient_ids, pgh_label="insert")
    assert events.count() == 60
    contexts = {(e.pgh_context.metadata["user"], e.pgh_context.metadata["source"]) for e in events}
    assert contexts == {(system.pk, "seed_demo")}
    # Rows written in bulk are audited too.
    assessment_events = Assessment.pgh_event_model.objects.filter(pgh_label="insert")
    assert assessment_events.count() == Assessment.objects.count()
    assert not assessment_events.filter(pgh_context__isnull=True).exists()
    membership_events = Membership.pgh_event_model.objects.filter(pgh_label="insert")
    assert {e.pgh_context.metadata["user"] for e in membership_events} == {system.pk}
