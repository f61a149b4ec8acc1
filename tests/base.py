"""Personae and builders shared by the tests (synthetic data only)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib.auth.models import User

from cohort.choices import Role
from cohort.models import (
    AdverseEvent,
    Assessment,
    Centre,
    FollowUp,
    Membership,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)
from cohort.services import centre_create, patient_enrol

T0 = dt.date(2022, 3, 1)  # re-induction date used by the builders
INITIAL = dt.date(2021, 3, 2)


def make_user(username: str, *, centre: Centre | None = None, role: str = Role.NURSE, **extra) -> User:
    user = User.objects.create_user(username=username, password="correct-horse-battery", **extra)
    if centre is not None:
        Membership.objects.create(user=user, centre=centre, role=role)
    return user


def personae() -> dict:
    """Centre A and B, a nurse at each, a coordinator of both, an admin."""
    centre_a = centre_create(code="AMC", name="Synthetic Centre A")
    centre_b = centre_create(code="UMCU", name="Synthetic Centre B")
    nurse_a = make_user("nurse_a", centre=centre_a)
    nurse_b = make_user("nurse_b", centre=centre_b)
    coordinator = make_user("coordinator", centre=centre_a, role=Role.COORDINATOR)
    Membership.objects.create(user=coordinator, centre=centre_b, role=Role.COORDINATOR)
    admin = make_user("admin", centre=centre_a, role=Role.ADMIN, is_staff=True, is_superuser=True)
    return {
        "centre_a": centre_a,
        "centre_b": centre_b,
        "nurse_a": nurse_a,
        "nurse_b": nurse_b,
        "coordinator": coordinator,
        "admin": admin,
    }


PATIENT_DATA = {
    "enrolment_date": dt.date(2022, 2, 1),
    "consent": "yes",
    "sex": "F",
    "birth_year": 1985,
    "diagnosis_year": 2005,
    "montreal_location": "L3",
    "upper_gi": "no",
    "montreal_behaviour": "B1",
    "perianal": "no",
    "prior_resection": "no",
    "smoking": "never",
}


def make_patient(centre: Centre, by: User, **overrides) -> Patient:
    return patient_enrol(centre=centre, by=by, **{**PATIENT_DATA, **overrides})


def make_record(patient: Patient, *, t0: dt.date = T0, initial: dt.date = INITIAL) -> Patient:
    """A complete, valid CRF for `patient`: two prior anti-TNFs, three doses, re-induction,
    four visits, follow-up (ongoing) and one adverse event."""
    PriorBiologic.objects.create(
        patient=patient,
        agent="infliximab",
        start_date=dt.date(2015, 1, 1),
        stop_date=dt.date(2018, 1, 1),
        stop_reason="loss_of_response",
    )
    PriorBiologic.objects.create(
        patient=patient,
        agent="adalimumab",
        start_date=dt.date(2018, 2, 1),
        stop_date=dt.date(2020, 6, 1),
        stop_reason="loss_of_response",
    )
    UstekinumabDose.objects.create(
        patient=patient,
        dose_date=initial,
        phase="initial_induction",
        route="iv",
        dose_mg=390,
        weight_kg=Decimal("70"),
    )
    UstekinumabDose.objects.create(
        patient=patient,
        dose_date=initial + dt.timedelta(days=56),
        phase="maintenance",
        route="sc",
        dose_mg=90,
    )
    UstekinumabDose.objects.create(
        patient=patient, dose_date=t0, phase="reinduction", route="iv", dose_mg=390, weight_kg=Decimal("72.5")
    )
    Reinduction.objects.create(
        patient=patient,
        initial_response="yes",
        lor_date=t0 - dt.timedelta(days=20),
        lor_clinical="yes",
        lor_biochemical="no",
        lor_endoscopic="no",
        interval_before="q8w",
        interval_after="q4w",
        corticosteroids="no",
        immunomodulator="none",
    )
    for visit, day, hbi in (("week_0", 0, 9), ("week_8", 56, 4), ("week_20", 140, 3), ("week_52", 364, 2)):
        Assessment.objects.create(
            patient=patient,
            visit=visit,
            not_done="no",
            assessment_date=t0 + dt.timedelta(days=day),
            hbi=hbi,
            crp_mg_l=Decimal("4.5"),
            fcal_ug_g=Decimal("150"),
            corticosteroids="no",
        )
    FollowUp.objects.create(patient=patient, status="ongoing", last_follow_up_date=t0 + dt.timedelta(days=400))
    AdverseEvent.objects.create(
        patient=patient,
        onset_date=t0 + dt.timedelta(days=30),
        category="infection",
        description="Upper respiratory tract infection",
        serious="no",
        causality="unlikely",
        outcome="resolved",
        led_to_discontinuation="no",
    )
    return patient


def login_as(client, user: User):
    """Log `user` in on the test client as after a full login: for roles that need MFA, with a
    confirmed TOTP device and this session verified by it (the MFA pages are tested on their own)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(user)
    if user.is_staff or user.is_superuser or user.memberships.exclude(role=Role.NURSE).exists():
        device, _ = TOTPDevice.objects.get_or_create(user=user, name="test device", defaults={"confirmed": True})
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client
