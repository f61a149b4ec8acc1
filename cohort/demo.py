"""A synthetic, clinically plausible demo patient (SPEC section 8), as plain field values.

The rates follow the published analysis (SPEC section 1): ~77% with two or more prior anti-TNF
agents, ~65% vedolizumab exposed, re-induction a median 11 months after the initial induction,
~74% / 71% still on ustekinumab at weeks 20 / 52, clinical remission ~37 / 56 / 45% at weeks 8 /
20 / 52, ~16% nonresponse and adverse events in ~13% of patients. Nothing here describes a real
person. No database here: `manage.py seed_demo` writes the plans (cohort/management/commands).
A little over 500 lines and kept whole: the calibrated rates and the draws that use them are
tuned together.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError

from cohort.choices import Visit
from cohort.models import VISIT_SCHEDULE, hbi_component_sum, iv_dose_for_weight

# Ustekinumab was approved for Crohn's disease in the EU in November 2016.
FIRST_USTEKINUMAB = dt.date(2016, 11, 15)
FIRST_BIOLOGIC = dt.date(1998, 1, 1)
MAINTENANCE_DAYS = {"q4w": 28, "q6w": 42, "q8w": 56, "q12w": 84}

# Probability of clinical remission (HBI <= 4) at a visit while on ustekinumab, for patients who
# will not be stopped for nonresponse; calibrated so the observed rates land near 37/56/45%.
REMISSION_P = {"week_8": 0.42, "week_20": 0.57, "week_52": 0.46}
ENDOSCOPY_P = {"week_0": 0.25, "week_8": 0.08, "week_20": 0.2, "week_52": 0.35}

# (share of all patients, first day, last day, {reason: weight}): the cumulative discontinuation
# incidence is ~26% by day 140 and ~29% by day 364 (drug survival 74% / 71%); nonresponse is
# 0.26 * 0.615 = 16% of patients.
DISCONTINUATION = (
    (
        0.26,
        28,
        140,
        {
            "nonresponse": 61.5,
            "adverse_event": 8,
            "surgery": 12,
            "patient_wish": 7,
            "other": 4,
            "loss_of_response": 7.5,
        },
    ),
    (0.03, 141, 364, {"loss_of_response": 55, "adverse_event": 15, "surgery": 15, "patient_wish": 15}),
    (
        0.12,
        365,
        1400,
        {"loss_of_response": 60, "adverse_event": 8, "surgery": 15, "patient_wish": 12, "other": 5},
    ),
)
# Adverse events in ~13% of patients: those stopped for one, and ~10% of the others.
AE_P = 0.10

NEXT_THERAPY = (
    "risankizumab",
    "upadacitinib",
    "vedolizumab",
    "infliximab",
    "adalimumab",
    "ileocaecal resection",
    "clinical trial",
    "",
)

# (description, chance of being serious, outcomes): free text without identifiers.
AE_TEXTS: dict[str, tuple[tuple[str, float], ...]] = {
    "infection": (
        ("Upper respiratory tract infection, treated in primary care", 0.0),
        ("Urinary tract infection, oral antibiotics", 0.0),
        ("Viral gastroenteritis, self-limiting", 0.05),
        ("Herpes zoster, treated with valaciclovir", 0.1),
        ("Pneumonia requiring hospital admission and intravenous antibiotics", 1.0),
        ("Perianal abscess, surgical drainage", 0.6),
    ),
    "infusion_reaction": (
        ("Flushing during the infusion, infusion rate reduced", 0.0),
        ("Chills and mild dyspnoea during the infusion, resolved after antihistamine", 0.1),
    ),
    "injection_site_reaction": (
        ("Erythema and itching at the injection site", 0.0),
        ("Painful swelling at the injection site for two days", 0.0),
    ),
    "skin": (
        ("Psoriasiform rash on the scalp, topical steroids", 0.0),
        ("Eczema on both forearms", 0.0),
        ("Acneiform eruption on the face and back", 0.0),
    ),
    "arthralgia": (
        ("Arthralgia of knees and wrists without swelling", 0.0),
        ("Pain in small joints of the hands, NSAID not advised", 0.0),
    ),
    "headache": (
        ("Headache on the day after the dose, paracetamol", 0.0),
        ("Recurrent tension-type headache", 0.0),
    ),
    "malignancy": (
        ("Basal cell carcinoma of the skin, excised", 0.5),
        ("Early-stage melanoma, wide local excision", 1.0),
    ),
    "other": (
        ("Fatigue", 0.0),
        ("Transient rise in liver enzymes", 0.0),
        ("Nausea after the infusion", 0.0),
        ("Hair loss", 0.0),
    ),
}
AE_CATEGORY_WEIGHTS = {
    "infection": 35,
    "infusion_reaction": 8,
    "injection_site_reaction": 10,
    "skin": 12,
    "arthralgia": 12,
    "headache": 10,
    "malignancy": 2,
    "other": 11,
}


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _yes(rng: random.Random, p: float) -> str:
    return "yes" if rng.random() < p else "no"


def _days(start: dt.date, days: int) -> dt.date:
    return start + dt.timedelta(days=days)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _one_decimal(value: float) -> Decimal:
    return Decimal(f"{value:.1f}")


@dataclass
class PatientPlan:
    """One synthetic patient as plain field values: no ORM, so it is cheap to make 10,000."""

    patient: dict[str, Any]
    prior_biologics: list[dict[str, Any]] = field(default_factory=list)
    doses: list[dict[str, Any]] = field(default_factory=list)
    reinduction: dict[str, Any] = field(default_factory=dict)
    assessments: list[dict[str, Any]] = field(default_factory=list)
    follow_up: dict[str, Any] | None = None
    adverse_events: list[dict[str, Any]] = field(default_factory=list)


def plan_patient(rng: random.Random, today: dt.date, *, with_follow_up: bool = True) -> PatientPlan:
    # Timeline: initial induction, re-induction (t0) a median 11.1 months later (IQR 6.9-19.5).
    latest_t0 = _days(today, -7)
    span = (latest_t0 - FIRST_USTEKINUMAB).days
    if span < 120:
        raise CommandError("today is too close to 2016 for a plausible cohort.")
    interval = int(_clamp(round(rng.lognormvariate(math.log(338), 0.77)), 90, min(1800, span - 1)))
    earliest_t0 = _days(FIRST_USTEKINUMAB, interval)
    # Most patients were re-induced long enough ago to have reached week 52.
    mature = _days(today, -430)
    last_t0 = mature if rng.random() < 0.85 and mature > earliest_t0 else latest_t0
    t0 = _days(earliest_t0, rng.randint(0, (last_t0 - earliest_t0).days))
    initial = _days(t0, -interval)

    plan = PatientPlan(patient=_patient_fields(rng, today, t0))
    plan.prior_biologics = _prior_biologics(rng, plan.patient, initial)
    plan.reinduction, interval_before = _reinduction_fields(rng, initial, t0)
    plan.doses = _doses(rng, initial, t0, interval_before)

    # Follow-up: most are followed for years (up to today); some are lost early.
    available = (today - t0).days
    planned = rng.randint(60, 400) if rng.random() < 0.10 else rng.randint(380, 1800)
    fu_days = min(planned, available)
    lost = planned < available
    stop_day, reason = None, ""
    u = rng.random()
    for share, first, last, reasons in DISCONTINUATION:
        if u < share:
            stop_day, reason = rng.randint(first, last), _pick(rng, reasons)
            break
        u -= share
    nonresponder = reason == "nonresponse"
    discontinued = stop_day is not None and stop_day <= fu_days
    if discontinued:
        disc_date = _days(t0, stop_day)
        last_fu = _days(t0, min(available, stop_day + rng.randint(0, 90)))
    else:
        disc_date = None
        last_fu = _days(t0, fu_days)

    good = rng.random() < 0.5  # a patient effect: remission tends to recur in the same patients
    for visit in Visit.values:
        row = _assessment(
            rng,
            today,
            visit,
            t0=t0,
            last_fu=last_fu,
            disc_date=disc_date,
            lost=lost,
            nonresponder=nonresponder,
            good=good,
            reinduction=plan.reinduction,
        )
        if row is not None:
            plan.assessments.append(row)

    if with_follow_up:
        plan.follow_up = {
            "status": "discontinued" if discontinued else "ongoing",
            "last_follow_up_date": last_fu,
            "discontinuation_date": disc_date,
            "discontinuation_reason": reason if discontinued else "",
            "next_therapy": _next_therapy(rng, reason) if discontinued else "",
        }

    stopped_for_ae = discontinued and reason == "adverse_event"
    if stopped_for_ae or rng.random() < AE_P:
        plan.adverse_events = _adverse_events(
            rng, t0=t0, last_fu=last_fu, disc_date=disc_date if stopped_for_ae else None
        )
    if plan.follow_up is not None:
        plan.follow_up["adverse_events_any"] = "yes" if plan.adverse_events else "no"
    return plan


def _patient_fields(rng: random.Random, today: dt.date, t0: dt.date) -> dict[str, Any]:
    age = int(_clamp(round(rng.gauss(40, 13)), 18, 82))
    behaviour = _pick(rng, {"B1": 45, "B2": 35, "B3": 20})
    return {
        "enrolment_date": min(today, _days(t0, rng.randint(0, 60))),
        "consent": "yes",
        "sex": _pick(rng, {"F": 55, "M": 45}),
        "birth_year": t0.year - age,
        "age": age,  # not a field: used to place the diagnosis and the prior biologics
        "montreal_location": _pick(rng, {"L1": 35, "L2": 20, "L3": 45}),
        "upper_gi": _yes(rng, 0.12),
        "montreal_behaviour": behaviour,
        "perianal": _yes(rng, 0.25),
        "prior_resection": _yes(rng, 0.25 if behaviour == "B1" else 0.55),
        "smoking": _pick(rng, {"current": 20, "former": 25, "never": 50, "unknown": 5}),
    }


def _prior_biologics(rng: random.Random, patient: dict[str, Any], initial: dt.date) -> list[dict[str, Any]]:
    n_anti_tnf = int(_pick(rng, {"0": 6, "1": 17, "2": 45, "3": 27, "4": 5}))
    first_line = rng.sample(["infliximab", "adalimumab"], 2)
    later = rng.sample(["certolizumab_pegol", "golimumab"], 2)
    agents = (first_line + later)[:n_anti_tnf]
    if rng.random() < 0.65:
        # Vedolizumab usually came after the anti-TNF agents, sometimes between them.
        position = len(agents) if rng.random() < 0.8 else rng.randint(0, len(agents))
        agents.insert(position, "vedolizumab")
    if rng.random() < 0.06:
        agents.insert(rng.randint(0, len(agents)), "other")

    # Disease duration long enough for the courses, diagnosed at 8 years of age or later.
    age = patient.pop("age")
    t0_year = patient["birth_year"] + age
    needed = t0_year - initial.year + 1 + len(agents)
    duration = int(_clamp(max(round(rng.lognormvariate(math.log(11), 0.55)), needed), 1, age - 8))
    patient["diagnosis_year"] = t0_year - duration
    if not agents:
        return []

    floor = max(FIRST_BIOLOGIC, dt.date(patient["diagnosis_year"], 7, 1))
    if (initial - floor).days < 200 * len(agents):
        floor = FIRST_BIOLOGIC
    budget = min(1100, ((initial - floor).days - 90) // len(agents))
    cursor = _days(initial, -rng.randint(14, 90))  # wash-out before the first ustekinumab dose
    rows = []
    for agent in reversed(agents):
        gap = rng.randint(7, max(7, budget // 6))
        length = rng.randint(max(28, budget // 4), max(28, budget - gap))
        stop = cursor
        start = max(floor, _days(stop, -length))
        cursor = _days(start, -gap)
        rows.append(
            {
                "agent": agent,
                "agent_other": rng.choice(["natalizumab", "tofacitinib", "investigational agent (trial)"])
                if agent == "other"
                else "",
                "start_date": None if rng.random() < 0.08 else start,
                "stop_date": stop,
                "stop_reason": _pick(
                    rng,
                    {
                        "primary_nonresponse": 15,
                        "loss_of_response": 55,
                        "intolerance": 20,
                        "other": 5,
                        "unknown": 5,
                    },
                ),
            }
        )
    rows.reverse()
    return rows


def _reinduction_fields(rng: random.Random, initial: dt.date, t0: dt.date) -> tuple[dict[str, Any], str]:
    interval = (t0 - initial).days
    lor = {
        "lor_clinical": _yes(rng, 0.85),
        "lor_biochemical": _yes(rng, 0.6),
        "lor_endoscopic": _yes(rng, 0.25),
    }
    if "yes" not in lor.values():
        lor["lor_clinical"] = "yes"
    before = _pick(rng, {"q8w": 60, "q12w": 12, "q6w": 10, "q4w": 13, "other": 5})
    return {
        "initial_response": "yes",
        "lor_date": _days(t0, -rng.randint(7, min(75, interval - 30))),
        **lor,
        "interval_before": before,
        "interval_after": _pick(rng, {"q4w": 45, "q6w": 10, "q8w": 37, "q12w": 3, "other": 5}),
        "corticosteroids": _yes(rng, 0.3),
        "immunomodulator": _pick(rng, {"none": 65, "thiopurine": 20, "methotrexate": 12, "other": 3}),
    }, before


def _iv_dose(rng: random.Random, weight: Decimal) -> int:
    expected = iv_dose_for_weight(weight)  # the model's weight bands
    if rng.random() < 0.05:  # a few off the weight band: saved with a flag
        return rng.choice([dose for dose in (260, 390, 520) if dose != expected])
    return expected


def _doses(rng: random.Random, initial: dt.date, t0: dt.date, interval_before: str) -> list[dict[str, Any]]:
    weight = rng.gauss(72, 15)
    first_weight = _one_decimal(_clamp(weight, 38, 150))
    second_weight = _one_decimal(_clamp(weight + rng.gauss(0, 3), 38, 150))
    doses = [
        {
            "dose_date": initial,
            "phase": "initial_induction",
            "route": "iv",
            "dose_mg": _iv_dose(rng, first_weight),
            "weight_kg": first_weight if rng.random() < 0.95 else None,
        }
    ]
    # Subcutaneous 90 mg maintenance from week 8 until shortly before the re-induction.
    step = MAINTENANCE_DAYS.get(interval_before) or rng.choice([35, 70])
    day = 56
    while _days(initial, day) < _days(t0, -7):
        doses.append(
            {
                "dose_date": _days(initial, day),
                "phase": "maintenance",
                "route": "sc",
                "dose_mg": 90,
                "weight_kg": None,
            }
        )
        day += step + rng.randint(-3, 3)
    doses.append(
        {
            "dose_date": t0,
            "phase": "reinduction",
            "route": "iv",
            "dose_mg": _iv_dose(rng, second_weight),
            "weight_kg": second_weight if rng.random() < 0.95 else None,
        }
    )
    return doses


def _assessment(
    rng: random.Random,
    today: dt.date,
    visit: str,
    *,
    t0: dt.date,
    last_fu: dt.date,
    disc_date: dt.date | None,
    lost: bool,
    nonresponder: bool,
    good: bool,
    reinduction: dict[str, Any],
) -> dict[str, Any] | None:
    nominal, low, high = VISIT_SCHEDULE[visit]
    if visit == "week_0":
        # Baseline on the day of the infusion or in the days before (a hard rule: within 14 days).
        offset = 0 if rng.random() < 0.5 else rng.randint(-10, 3)
    elif rng.random() < 0.04:
        offset = low - rng.randint(3, 14) if rng.random() < 0.5 else high + rng.randint(3, 21)
    else:
        offset = int(_clamp(round(rng.gauss(nominal, 8)), low, high))
    date = _days(t0, offset)
    window_passed = _days(t0, high) < today

    if disc_date is not None and date >= disc_date:
        if window_passed and rng.random() < 0.5:
            return _not_done(visit, "not_applicable")
        return None
    if date > last_fu:
        if lost and window_passed and rng.random() < 0.5:
            return _not_done(visit, "lost_to_follow_up")
        return None
    if visit != "week_0" and rng.random() < 0.04:
        return _not_done(visit, _pick(rng, {"missed": 75, "unknown": 25}))

    if visit == "week_0":
        remission = reinduction["lor_clinical"] == "no" and rng.random() < 0.6
    elif nonresponder:
        remission = rng.random() < 0.02
    else:
        remission = rng.random() < REMISSION_P[visit] + (0.12 if good else -0.12)
    if remission:
        target = _pick(rng, {"0": 10, "1": 18, "2": 25, "3": 25, "4": 22})
        hbi = int(target)
    else:
        hbi = rng.randint(7, 18) if nonresponder else rng.randint(5, 14)

    row: dict[str, Any] = {
        "visit": visit,
        "not_done": "no",
        "not_done_reason": "",
        "assessment_date": date,
        **_hbi_fields(rng, hbi),
        "crp_mg_l": None
        if rng.random() < 0.08
        else _one_decimal(_clamp(rng.lognormvariate(math.log(2.5 if remission else 12), 0.9), 0.1, 300)),
        "fcal_ug_g": None
        if rng.random() < 0.35
        else _one_decimal(_clamp(rng.lognormvariate(math.log(120 if remission else 600), 0.8), 10, 6000)),
        "endoscopy_done": "no",
        "ses_cd": None,
    }
    if rng.random() < ENDOSCOPY_P[visit]:
        row["endoscopy_done"] = "yes"
        if rng.random() < 0.95:
            row["ses_cd"] = rng.choice([0, 1, 2, 2, 3, 4, 6]) if remission else rng.randint(3, 20)
    elif rng.random() < 0.1:
        row["endoscopy_done"] = ""
    if visit == "week_0":
        row["corticosteroids"] = reinduction["corticosteroids"]
    else:
        row["corticosteroids"] = _yes(rng, 0.12 if remission else 0.35) if rng.random() < 0.97 else ""
    return row


def _not_done(visit: str, reason: str) -> dict[str, Any]:
    return {"visit": visit, "not_done": "yes", "not_done_reason": reason, "assessment_date": None}


def _hbi_fields(rng: random.Random, hbi: int) -> dict[str, Any]:
    """The five HBI components adding up to `hbi` (liquid stools take the remainder); now and
    then only the total is known."""
    if rng.random() < 0.05:
        return {"hbi": hbi}
    rest = hbi
    wellbeing = rng.randint(0, min(4, rest // 3 + 1, rest))
    rest -= wellbeing
    pain = rng.randint(0, min(3, rest // 3 + 1, rest))
    rest -= pain
    mass = rng.randint(0, min(3, rest // 5, rest)) if rest >= 5 else 0
    rest -= mass
    complications = rng.randint(0, min(2, rest // 4)) if rest >= 4 else 0
    rest -= complications
    parts = {
        "hbi_wellbeing": wellbeing,
        "hbi_pain": pain,
        "hbi_stools": rest,
        "hbi_mass": mass,
        "hbi_complications": complications,
    }
    return {**parts, "hbi": hbi_component_sum(list(parts.values()))}


def _next_therapy(rng: random.Random, reason: str) -> str:
    if reason == "surgery":
        return rng.choice(["ileocaecal resection", "stricturoplasty", "ileostomy"])
    return rng.choice(NEXT_THERAPY)


def _adverse_events(
    rng: random.Random, *, t0: dt.date, last_fu: dt.date, disc_date: dt.date | None
) -> list[dict[str, Any]]:
    rows = []
    count = int(_pick(rng, {"1": 80, "2": 17, "3": 3}))
    for index in range(count):
        category = _pick(rng, AE_CATEGORY_WEIGHTS)
        description, serious_p = rng.choice(AE_TEXTS[category])
        led = disc_date is not None and index == 0
        if led:
            onset = max(t0, _days(disc_date, -rng.randint(0, 14)))
        elif category == "infusion_reaction":
            onset = t0
        else:
            onset = _days(t0, rng.randint(0, (last_fu - t0).days))
        serious = rng.random() < max(serious_p, 0.3 if led else 0.0)
        rows.append(
            {
                "onset_date": onset,
                "category": category,
                "description": description,
                "serious": "yes" if serious else "no",
                "causality": _pick(
                    rng,
                    {"unrelated": 15, "unlikely": 25, "possible": 40, "probable": 15, "definite": 5}
                    if category not in ("infusion_reaction", "injection_site_reaction")
                    else {"probable": 50, "definite": 50},
                ),
                "outcome": _pick(
                    rng,
                    {"resolved": 70, "resolving": 12, "ongoing": 8, "sequelae": 5, "unknown": 5},
                ),
                "led_to_discontinuation": "yes" if led else "no",
            }
        )
    return rows
