"""`python manage.py outcomes` (SPEC section 5, 'Outcome JSON (must)'): one JSON object with the
SPEC's keys in the SPEC's shapes, for all centres and per centre, from the current data; a table
with --format text; an unknown centre is refused. Shapes are checked strictly (types, every key)
because outside checks read this output."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cohort.services import centre_create
from tests.test_outcomes import COHORT31

pytestmark = pytest.mark.django_db

COUNT = {"n": int, "N": int}
DISTRIBUTION = {"median": (float, type(None)), "q1": (float, type(None)), "q3": (float, type(None)), "N": int}
PROPORTION = {"n": int, "N": int, "ci_low": (float, type(None)), "ci_high": (float, type(None))}
ESTIMATE = {"estimate": (float, type(None)), "ci_low": (float, type(None)), "ci_high": (float, type(None)),
            "at_risk": int}  # fmt: skip
CURVE_POINT = {"day": int, "estimate": float, "ci_low": (float, type(None)), "ci_high": (float, type(None)),
               "at_risk": int, "events": int, "censored": int}  # fmt: skip
WEEKS = ("week_8", "week_20", "week_52")


def check(value, shape, where: str) -> None:
    """`value` has every key of `shape` with a value of its type (more keys may be added)."""
    assert isinstance(value, dict), where
    for key, kind in shape.items():
        assert key in value, f"{where}.{key} missing"
        if isinstance(kind, dict):
            check(value[key], kind, f"{where}.{key}")
        else:
            assert isinstance(value[key], kind) and not isinstance(value[key], bool), f"{where}.{key}: {value[key]!r}"


def outcomes_json(*args) -> dict:
    out = StringIO()
    call_command("outcomes", *args, "--format", "json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def cohort31():
    for code in ("AMC", "UMCU", "RUMC"):
        centre_create(code=code, name=f"Synthetic {code}")
    call_command("import_cohort", str(COHORT31), stdout=StringIO())


def test_it_prints_the_spec_json_for_all_centres(cohort31):
    result = outcomes_json()

    check(result, {"scope": str, "n_patients": int, "excluded_incomplete": int}, "result")
    assert (result["scope"], result["n_patients"], result["excluded_incomplete"]) == ("all", 31, 0)
    check(result["baseline"], {"anti_tnf_2plus": COUNT, "vedolizumab": COUNT}, "baseline")
    check(result["baseline"], {"interval_initial_to_reinduction_months": DISTRIBUTION}, "baseline")
    for key, value in result["baseline"].items():  # the rest of the table: the same two shapes
        check(value, COUNT if "n" in value else DISTRIBUTION, f"baseline.{key}")
    survival = result["drug_survival"]
    check(survival, {"week_20": ESTIMATE, "week_52": ESTIMATE}, "drug_survival")
    assert isinstance(survival["curve"], list) and survival["curve"]
    for point in survival["curve"]:
        check(point, CURVE_POINT, "drug_survival.curve[]")
    assert [point["day"] for point in survival["curve"]] == sorted({point["day"] for point in survival["curve"]})
    for week in WEEKS:
        check(result["clinical_remission"][week], dict.fromkeys(("observed", "nri", "steroid_free"), PROPORTION), week)
        check(result["biochemical_remission"][week], PROPORTION, f"biochemical_remission.{week}")
        check(result["endoscopic_remission"][week], PROPORTION, f"endoscopic_remission.{week}")
    check(result["nonresponse"], PROPORTION, "nonresponse")
    events = result["adverse_events"]
    check(events, {"patients": int, "events": int, "serious": int, "led_to_discontinuation": int}, "adverse_events")
    assert all(isinstance(n, int) for n in events["by_category"].values())
    # The published figures of the first 31 patients (SPEC section 1).
    assert result["baseline"]["anti_tnf_2plus"] == {"n": 24, "N": 31}
    assert result["baseline"]["vedolizumab"] == {"n": 20, "N": 31}
    assert round(result["drug_survival"]["week_20"]["estimate"], 2) == 0.74
    assert (result["nonresponse"]["n"], result["nonresponse"]["N"]) == (5, 31)
    assert events["patients"] == 4


def test_it_prints_one_centre_and_refuses_an_unknown_one(cohort31):
    umcu = outcomes_json("--centre", "UMCU")
    assert (umcu["scope"], umcu["n_patients"]) == ("UMCU", 10)
    with pytest.raises(CommandError, match="--centre: no centre with code 'XYZ'"):
        call_command("outcomes", "--centre", "XYZ", stdout=StringIO())


def test_it_prints_a_readable_table(cohort31):
    out = StringIO()
    call_command("outcomes", "--format", "text", stdout=out)
    text = out.getvalue()
    assert "scope: all" in text and "n patients: 31" in text
    assert "anti tnf 2plus: 24/31 (77%)" in text
    assert "interval initial to reinduction months: 11.1 (6.9-19.5), N=31" in text


def test_the_text_table_rounds_percentages_as_the_paper_does():
    """Half up, as the dashboard and the PDF: 1 of 8 is 13%, not Python's round-half-even 12%."""
    from reports.text import outcome_table

    table = outcome_table({"x": {"n": 1, "N": 8, "ci_low": 0.0625, "ci_high": 0.125}})
    assert "x: 1/8 (13%)  95% CI 6-13%" in table
