"""What the dashboard and the PDF print of an outcome dict: numbers formatted as a paper prints
them (whole percentages, half rounded up; one decimal for medians) and the rows of each table.

Pure functions of the outcome dict (SPEC section 5 shapes). JSON columns are PostgreSQL jsonb,
which does not keep key order, so every table has its order written here.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import formats
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cohort.choices import Interval
from reports import figures, outcomes

WEEKS = (("week_8", 8), ("week_20", 20), ("week_52", 52))

# Baseline table: (key, label) rows, or (heading, ((key, label), ...)) groups, in the paper's order.
# Keys not listed here (a later algorithm may add some) follow at the end under a humanised label.
BASELINE_LAYOUT: tuple = (
    (gettext_lazy("Sex"), (("sex_female", gettext_lazy("female")), ("sex_male", gettext_lazy("male")))),
    ("age_at_reinduction_years", gettext_lazy("Age at re-induction, years")),
    ("disease_duration_years", gettext_lazy("Disease duration, years")),
    (
        gettext_lazy("Montreal location"),
        (
            ("montreal_location_L1", gettext_lazy("L1 ileal")),
            ("montreal_location_L2", gettext_lazy("L2 colonic")),
            ("montreal_location_L3", gettext_lazy("L3 ileocolonic")),
            ("upper_gi", gettext_lazy("L4 upper GI involvement")),
        ),
    ),
    (
        gettext_lazy("Montreal behaviour"),
        (
            ("montreal_behaviour_B1", gettext_lazy("B1 non-stricturing, non-penetrating")),
            ("montreal_behaviour_B2", gettext_lazy("B2 stricturing")),
            ("montreal_behaviour_B3", gettext_lazy("B3 penetrating")),
            ("perianal", gettext_lazy("p perianal disease")),
        ),
    ),
    ("prior_resection", gettext_lazy("Prior intestinal resection")),
    (
        gettext_lazy("Smoking"),
        (
            ("smoking_current", gettext_lazy("current")),
            ("smoking_former", gettext_lazy("former")),
            ("smoking_never", gettext_lazy("never")),
            ("smoking_unknown", gettext_lazy("unknown")),
        ),
    ),
    (
        gettext_lazy("Prior anti-TNF agents"),
        (
            ("prior_anti_tnf_0", "0"),
            ("prior_anti_tnf_1", "1"),
            ("prior_anti_tnf_2", "2"),
            ("prior_anti_tnf_3plus", "≥ 3"),
        ),
    ),
    ("anti_tnf_2plus", gettext_lazy("≥ 2 prior anti-TNF agents")),
    ("vedolizumab", gettext_lazy("Prior vedolizumab")),
    ("interval_initial_to_reinduction_months", gettext_lazy("Initial induction to re-induction, months")),
    ("corticosteroids_at_reinduction", gettext_lazy("Corticosteroids at re-induction")),
    (
        gettext_lazy("Immunomodulator at re-induction"),
        (
            ("immunomodulator_any", gettext_lazy("any")),
            ("immunomodulator_thiopurine", gettext_lazy("thiopurine")),
            ("immunomodulator_methotrexate", gettext_lazy("methotrexate")),
            ("immunomodulator_other", gettext_lazy("other")),
        ),
    ),
    (
        gettext_lazy("Week 0"),
        (
            ("week0_hbi", gettext_lazy("Harvey-Bradshaw Index")),
            ("week0_crp_mg_l", gettext_lazy("CRP, mg/L")),
            ("week0_fcal_ug_g", gettext_lazy("Faecal calprotectin, µg/g")),
        ),
    ),
)
AE_LABELS = {
    "infection": gettext_lazy("Infection"),
    "infusion_reaction": gettext_lazy("Infusion reaction"),
    "injection_site_reaction": gettext_lazy("Injection site reaction"),
    "skin": gettext_lazy("Skin"),
    "arthralgia": gettext_lazy("Arthralgia"),
    "headache": gettext_lazy("Headache"),
    "malignancy": gettext_lazy("Malignancy"),
    "other": gettext_lazy("Other"),
}


# ---------------------------------------------------------------------------------------------
# Formatting: as a paper prints it (whole percentages, half rounded up, one decimal for medians).


def whole_percent(fraction: float | None) -> str:
    if fraction is None:
        return "–"
    rounded = Decimal(repr(100 * fraction)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f"{rounded}%"


def share(n: int, total: int) -> str:
    # Counts in Decimal so that 1/8 prints 13%, not the binary float's 12%.
    if not total:
        return "–"
    rounded = (Decimal(100 * n) / Decimal(total)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f"{rounded}%"


def ci_range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "–"
    return f"{whole_percent(low).removesuffix('%')}–{whole_percent(high)}"


def decimal(value: float | None) -> str:
    if value is None:
        return "–"
    return formats.number_format(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), 1)


def threshold(value: float) -> str:
    """A study setting as written: 5, not 5.0; 0.5 as 0,5 in Dutch."""
    return formats.localize(int(value) if float(value).is_integer() else value)


def format_value(value: dict) -> str:
    """A baseline cell: a proportion "n/N (pct%)" or a distribution "median (q1–q3)"."""
    if {"n", "N"} <= value.keys():
        return f"{value['n']}/{value['N']} ({share(value['n'], value['N'])})"
    if {"median", "q1", "q3"} <= value.keys():
        if value["median"] is None:
            return "–"
        return f"{decimal(value['median'])} ({decimal(value['q1'])}–{decimal(value['q3'])})"
    return str(value)


def humanise(key: str) -> str:
    return key.replace("_", " ").capitalize()


def baseline_rows(baseline: dict, n_patients: int) -> list[dict]:
    """Rows {label, value, kind, heading, indent, note} of the baseline table."""
    rows: list[dict] = []
    shown: set[str] = set()

    def value_row(key: str, label, *, indent: bool) -> dict:
        value = baseline[key]
        shown.add(key)
        kind = "median" if "median" in value else "proportion"
        # A distribution over fewer patients than the table's n (a missing lab value) says so.
        note = f"N = {value['N']}" if kind == "median" and value.get("N") != n_patients else ""
        return {"label": label, "value": format_value(value), "kind": kind, "indent": indent, "note": note}

    for entry in BASELINE_LAYOUT:
        head, rest = entry
        if isinstance(rest, tuple):
            present = [(key, label) for key, label in rest if key in baseline]
            if present:
                rows.append({"label": head, "heading": True})
                rows.extend(value_row(key, label, indent=True) for key, label in present)
        elif head in baseline:
            rows.append(value_row(head, rest, indent=False))
    for key in sorted(baseline.keys() - shown):
        if isinstance(baseline[key], dict):
            rows.append(value_row(key, humanise(key), indent=False))
    return rows


def proportion_cell(value: dict | None) -> dict:
    """A remission-type proportion as {count "n/N", percent, ci}."""
    if not value:
        return {"count": "–", "percent": "–", "ci": "–"}
    return {
        "count": f"{value['n']}/{value['N']}",
        "percent": share(value["n"], value["N"]),
        "ci": ci_range(value.get("ci_low"), value.get("ci_high")),
    }


def remission_rows(result: dict) -> list[dict]:
    """One row per definition, one cell per week (8, 20, 52)."""
    clinical = result.get("clinical_remission", {})
    biochemical = result.get("biochemical_remission", {})
    endoscopic = result.get("endoscopic_remission", {})
    limits = {
        "hbi": settings.REMISSION_HBI_MAX,
        "crp": threshold(settings.REMISSION_CRP_MAX),
        "fcal": threshold(settings.REMISSION_FCAL_MAX),
    }
    definitions = (
        ("observed", _("Clinical remission, observed"), _("HBI ≤ %(hbi)s, patients seen on ustekinumab")),
        ("nri", _("Clinical remission, non-responder imputation"), _("discontinued or missing: not in remission")),
        ("steroid_free", _("Steroid-free clinical remission"), _("HBI ≤ %(hbi)s without corticosteroids")),
        ("biochemical", _("Biochemical remission"), _("CRP ≤ %(crp)s mg/L and faecal calprotectin ≤ %(fcal)s µg/g")),
        ("endoscopic", _("Endoscopic remission"), _("SES-CD ≤ 2")),
    )

    def value(key: str, week: str) -> dict | None:
        if key in ("observed", "nri", "steroid_free"):
            return clinical.get(week, {}).get(key)
        return (biochemical if key == "biochemical" else endoscopic).get(week)

    return [
        {
            "key": key,
            "label": label,
            "definition": note % limits,
            "cells": [proportion_cell(value(key, week)) for week, _week in WEEKS],
        }
        for key, label, note in definitions
    ]


def survival_rows(survival: dict) -> list[dict]:
    rows = []
    for key, week in (("week_20", 20), ("week_52", 52)):
        value = survival.get(key) or {}
        rows.append(
            {
                "week": week,
                "estimate": whole_percent(value.get("estimate")),
                "ci": ci_range(value.get("ci_low"), value.get("ci_high")),
                "at_risk": value.get("at_risk", "–"),
            }
        )
    return rows


def adverse_event_rows(by_category: dict) -> list[tuple[str, int]]:
    """(label, events) in the dictionary's order; unknown codes after it."""
    codes = [code for code in outcomes.AE_CATEGORIES if code in by_category]
    codes += sorted(by_category.keys() - set(codes))
    return [(AE_LABELS.get(code) or humanise(code), by_category[code]) for code in codes]


def outcome_context(result: dict) -> dict:
    """Everything the dashboard (and the PDF) shows of an outcome dict."""
    survival = result.get("drug_survival", {})
    curve = survival.get("curve", [])
    events = result.get("adverse_events", {})
    n_patients = result.get("n_patients", 0)
    return {
        "n_patients": n_patients,
        "excluded_incomplete": result.get("excluded_incomplete", 0),
        "baseline": baseline_rows(result.get("baseline", {}), n_patients),
        "survival": survival_rows(survival),
        "survival_events": survival.get("events", sum(step.get("events", 0) for step in curve)),
        "km_svg": mark_safe(  # our own markup; figures escapes every text in it
            figures.km_svg(
                curve,
                x_label=_("Weeks since re-induction"),
                y_label=_("On ustekinumab (%)"),
                at_risk_label=_("At risk"),
                title=_("Kaplan-Meier estimate of drug survival"),
            )
        )
        if curve
        else "",
        "weeks": [week for _key, week in WEEKS],
        "remission": remission_rows(result),
        "nonresponse": proportion_cell(result.get("nonresponse")),
        "adverse_events": {
            "patients": f"{events.get('patients', 0)}/{n_patients} ({share(events.get('patients', 0), n_patients)})",
            "events": events.get("events", 0),
            "serious": events.get("serious", 0),
            "led_to_discontinuation": events.get("led_to_discontinuation", 0),
            "by_category": adverse_event_rows(events.get("by_category", {})),
        },
    }


def treatment_rows(treatment: dict) -> dict:
    """The treatment table: two distributions and the maintenance interval before and after."""
    labels = dict(Interval.choices)
    distributions = [
        (_("Initial induction to re-induction, months"), treatment.get("interval_initial_to_reinduction_months")),
        (_("Maintenance doses recorded, per patient"), treatment.get("maintenance_doses")),
    ]
    intervals = []
    for code in outcomes.INTERVAL_CODES:
        before, after = treatment.get(f"interval_before_{code}"), treatment.get(f"interval_after_{code}")
        if before or after:
            intervals.append(
                {
                    "label": labels.get(code, code),
                    "before": format_value(before) if before else "–",
                    "after": format_value(after) if after else "–",
                }
            )
    return {
        "distributions": [
            {"label": label, "value": format_value(value), "N": value.get("N")}
            for label, value in distributions
            if value
        ],
        "intervals": intervals,
        "N": next((value["N"] for value in treatment.values() if isinstance(value, dict) and "N" in value), None),
    }
