"""The outcomes dashboard (SPEC sections 5 and 6): the latest snapshot of a scope as tables and the
Kaplan-Meier figure, who may see which scope, the updating state and its status document.

Snapshots are written directly with a hand-made result in the SPEC's shape, so these tests do not
depend on the computation (tested in its own files)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.urls import reverse
from django.utils import timezone

from reports.models import OutcomeSnapshot, RecomputeRequest
from tests.base import login_as
from tests.test_browser import page  # noqa: F401 - the Chromium fixture

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
COMPUTED_AT = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)  # 10:30 in Amsterdam

# Pinned, raised only on purpose. 4 are the request itself (session read and save, one statement
# each since cohort/sessions.py, 3 with a savepoint before;
# the user with the memberships cohort.access and the MFA role check read, in one query:
# cohort.accounts.UserBackend; the coordinator's TOTP device, which django-otp reads from the
# session); then the readable centres, the snapshot and the pending-request check; then the
# monitoring figures per centre (SPEC section 10, cohort.monitoring.by_centre): the centres with
# their locks; the patients and queries not closed (the tallies), signed and locked casebooks; the
# rows (the tallies) and rows verified. 14 since the queries not closed come with the tallies (issue
# 14), 13 since the user comes with the memberships, 11 since the session is saved in one statement.
DASHBOARD_QUERIES = 11


def proportion(n: int, total: int, low: float | None, high: float | None) -> dict:
    return {"n": n, "N": total, "ci_low": low, "ci_high": high}


def step(day, estimate, low, high, at_risk, events, censored) -> dict:
    return {
        "day": day,
        "estimate": estimate,
        "ci_low": low,
        "ci_high": high,
        "at_risk": at_risk,
        "events": events,
        "censored": censored,
    }


def outcome_result(scope: str = "all") -> dict:
    """30 included patients: a realistic result in the shape of SPEC section 5's outcome JSON."""
    curve = [
        step(0, 1.0, None, None, 30, 0, 0),
        step(35, 0.9333, 0.7590, 0.9829, 30, 2, 0),
        step(70, 0.9, 0.7213, 0.9666, 28, 1, 0),
        step(120, 0.9, 0.7213, 0.9666, 27, 0, 1),
        step(150, 0.8308, 0.6378, 0.9264, 26, 2, 0),
        step(200, 0.8308, 0.6378, 0.9264, 24, 0, 2),
        step(300, 0.7930, 0.5930, 0.9020, 22, 1, 0),
        step(380, 0.7930, 0.5930, 0.9020, 21, 0, 5),
        step(420, 0.7930, 0.5930, 0.9020, 16, 0, 16),
    ]
    return {
        "scope": scope,
        "algorithm_version": "1.0.0",
        "n_patients": 30,
        "excluded_incomplete": 2,
        "baseline": {
            "sex_female": {"n": 17, "N": 30},
            "sex_male": {"n": 13, "N": 30},
            "age_at_reinduction_years": {"median": 38.5, "q1": 29.25, "q3": 51.0, "N": 30},
            "disease_duration_years": {"median": 12.0, "q1": 7.0, "q3": 18.75, "N": 30},
            "montreal_location_L1": {"n": 9, "N": 30},
            "montreal_location_L2": {"n": 5, "N": 30},
            "montreal_location_L3": {"n": 16, "N": 30},
            "upper_gi": {"n": 3, "N": 30},
            "montreal_behaviour_B1": {"n": 14, "N": 30},
            "montreal_behaviour_B2": {"n": 11, "N": 30},
            "montreal_behaviour_B3": {"n": 5, "N": 30},
            "perianal": {"n": 8, "N": 30},
            "prior_resection": {"n": 12, "N": 30},
            "smoking_current": {"n": 6, "N": 30},
            "smoking_former": {"n": 8, "N": 30},
            "smoking_never": {"n": 15, "N": 30},
            "smoking_unknown": {"n": 1, "N": 30},
            "prior_anti_tnf_0": {"n": 1, "N": 30},
            "prior_anti_tnf_1": {"n": 8, "N": 30},
            "prior_anti_tnf_2": {"n": 17, "N": 30},
            "prior_anti_tnf_3plus": {"n": 4, "N": 30},
            "anti_tnf_2plus": {"n": 21, "N": 30},
            "vedolizumab": {"n": 9, "N": 30},
            "interval_initial_to_reinduction_months": {"median": 14.2, "q1": 9.8, "q3": 22.6, "N": 28},
            "corticosteroids_at_reinduction": {"n": 10, "N": 29},
            "immunomodulator_any": {"n": 11, "N": 29},
            "immunomodulator_thiopurine": {"n": 7, "N": 29},
            "immunomodulator_methotrexate": {"n": 3, "N": 29},
            "immunomodulator_other": {"n": 1, "N": 29},
            "week0_hbi": {"median": 9.0, "q1": 7.0, "q3": 12.0, "N": 29},
            "week0_crp_mg_l": {"median": 14.5, "q1": 6.1, "q3": 31.0, "N": 27},
            "week0_fcal_ug_g": {"median": 812.0, "q1": 420.0, "q3": 1450.0, "N": 24},
            "a_new_characteristic": {"n": 3, "N": 30},
        },
        "drug_survival": {
            "n": 30,
            "events": 6,
            "week_20": {"estimate": 0.8308, "ci_low": 0.6378, "ci_high": 0.9264, "at_risk": 26},
            "week_52": {"estimate": 0.7930, "ci_low": 0.5930, "ci_high": 0.9020, "at_risk": 21},
            "curve": curve,
        },
        "clinical_remission": {
            "week_8": {
                "observed": proportion(10, 27, 0.2152, 0.5580),
                "nri": proportion(10, 30, 0.1923, 0.5122),
                "steroid_free": proportion(8, 27, 0.1587, 0.4815),
            },
            "week_20": {
                "observed": proportion(14, 24, 0.3889, 0.7555),
                "nri": proportion(14, 30, 0.3023, 0.6383),
                "steroid_free": proportion(13, 24, 0.3507, 0.7206),
            },
            "week_52": {
                "observed": proportion(12, 19, 0.4095, 0.8088),
                "nri": proportion(12, 28, 0.2662, 0.6097),
                "steroid_free": proportion(12, 19, 0.4095, 0.8088),
            },
        },
        "biochemical_remission": {
            "week_8": proportion(7, 25, 0.1428, 0.4760),
            "week_20": proportion(9, 22, 0.2332, 0.6063),
            "week_52": proportion(8, 18, 0.2456, 0.6628),
        },
        "endoscopic_remission": {
            "week_8": proportion(0, 0, None, None),
            "week_20": proportion(2, 6, 0.0968, 0.7000),
            "week_52": proportion(3, 8, 0.1368, 0.6943),
        },
        "nonresponse": proportion(4, 30, 0.0531, 0.2968),
        "adverse_events": {
            "patients": 11,
            "events": 15,
            "serious": 2,
            "led_to_discontinuation": 1,
            "by_category": {"infection": 7, "arthralgia": 3, "headache": 2, "skin": 1, "other": 2, "malignancy": 0},
        },
    }


def make_snapshot(scope: str = "all", *, data_version: int = 41, computed_at=COMPUTED_AT, **changes) -> OutcomeSnapshot:
    return OutcomeSnapshot.objects.create(
        scope=scope,
        computed_at=computed_at,
        data_version=data_version,
        algorithm_version="1.0.0",
        result=outcome_result(scope) | changes,
    )


def make_pending(scope: str = "all", *, data_version: int = 42) -> RecomputeRequest:
    return RecomputeRequest.objects.create(scope=scope, data_version=data_version, requested_at=timezone.now())


def dashboard_url(scope: str | None = None) -> str:
    return reverse("reports:dashboard", args=[scope]) if scope else reverse("reports:dashboard-default")


def test_it_shows_the_latest_snapshot_of_every_centre_to_a_coordinator(client, people, django_assert_max_num_queries):
    make_snapshot(computed_at=COMPUTED_AT - dt.timedelta(days=1), data_version=40, n_patients=99)
    make_snapshot()
    login_as(client, people["coordinator"])
    client.get(dashboard_url("all"))  # warm per-process caches (translations, templates)

    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        response = client.get(dashboard_url("all"))

    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["scope"] == "all"
    assert "Computed at 14 Mar 2025, 10:30 from data as of version 41 (algorithm 1.0.0)." in html
    assert "30 patients included" in html and "N = 30" in html and "N = 99" not in html
    assert "2 without a re-induction dose or follow-up form left out" in html
    assert 'id="updating"' not in html and 'data-updating="false"' in html


def test_it_shows_the_baseline_table_in_the_papers_order(client, people):
    make_snapshot()
    login_as(client, people["coordinator"])

    response = client.get(dashboard_url("all"))

    rows = [(str(row["label"]), row.get("value")) for row in response.context["baseline"]]
    assert rows[:3] == [("Sex", None), ("female", "17/30 (57%)"), ("male", "13/30 (43%)")]
    assert ("Age at re-induction, years", "38.5 (29.3–51.0)") in rows
    assert ("≥ 2 prior anti-TNF agents", "21/30 (70%)") in rows
    assert ("Initial induction to re-induction, months", "14.2 (9.8–22.6)") in rows
    # A key the layout does not know yet is shown, under a readable label, after the known ones.
    assert rows[-1] == ("A new characteristic", "3/30 (10%)")
    html = response.content.decode()
    assert "N = 28" in html  # the interval is known for 28 of the 30 patients
    assert "812.0 (420.0–1450.0)" in html


def test_it_shows_drug_survival_with_the_curve_and_numbers_at_risk(client, people):
    make_snapshot()
    login_as(client, people["coordinator"])

    response = client.get(dashboard_url("all"))

    html = response.content.decode()
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    svg = ET.fromstring(html[start:end])
    paths = {path.get("data-role") for path in svg.iter(f"{SVG}path")}
    assert {"survival", "ci-band", "censor"} <= paths
    # Censoring at days 120 and 200 (380 and 420 are beyond week 52, where the axis ends).
    assert [p.get("data-days") for p in svg.iter(f"{SVG}path") if p.get("data-role") == "censor"] == ["120 200"]
    at_risk = [t.text for t in svg.iter(f"{SVG}text") if t.get("data-role") == "at-risk"]
    assert at_risk == ["30", "28", "26", "21"]
    survival = response.context["survival"]
    assert survival == [
        {"week": 20, "estimate": "83%", "ci": "64–93%", "at_risk": 26},
        {"week": 52, "estimate": "79%", "ci": "59–90%", "at_risk": 21},
    ]
    assert "6 of 30 patients discontinued ustekinumab." in html


def test_it_shows_remission_rates_with_counts_percentages_and_intervals(client, people):
    make_snapshot()
    login_as(client, people["coordinator"])

    response = client.get(dashboard_url("all"))

    rows = {row["key"]: row["cells"] for row in response.context["remission"]}
    assert list(rows) == ["observed", "nri", "steroid_free", "biochemical", "endoscopic"]
    assert rows["observed"][0] == {"count": "10/27", "percent": "37%", "ci": "22–56%"}
    assert rows["nri"][2] == {"count": "12/28", "percent": "43%", "ci": "27–61%"}
    assert rows["steroid_free"][1]["count"] == "13/24"
    assert rows["biochemical"][0] == {"count": "7/25", "percent": "28%", "ci": "14–48%"}
    # No endoscopy at week 8: no denominator, so no percentage and no interval.
    assert rows["endoscopic"][0] == {"count": "0/0", "percent": "–", "ci": "–"}
    html = response.content.decode()
    assert "10/27" in html and "37%" in html and "HBI ≤ 4" in html
    assert response.context["nonresponse"] == {"count": "4/30", "percent": "13%", "ci": "5–30%"}


def test_it_shows_adverse_events_by_category_in_the_dictionarys_order(client, people):
    make_snapshot()
    login_as(client, people["coordinator"])

    response = client.get(dashboard_url("all"))

    events = response.context["adverse_events"]
    assert events["patients"] == "11/30 (37%)"
    assert (events["events"], events["serious"], events["led_to_discontinuation"]) == (15, 2, 1)
    assert [(str(label), n) for label, n in events["by_category"]] == [
        ("Infection", 7),
        ("Skin", 1),
        ("Arthralgia", 3),
        ("Headache", 2),
        ("Malignancy", 0),
        ("Other", 2),
    ]


def test_percentages_are_whole_numbers_rounded_half_up():
    from reports.presentation import ci_range, share, whole_percent

    assert share(1, 8) == "13%"  # 12.5: a binary float rounds it down, a paper up
    assert share(10, 27) == "37%" and share(0, 0) == "–"
    assert whole_percent(0.8308) == "83%" and whole_percent(None) == "–"
    assert ci_range(0.2152, 0.558) == "22–56%" and ci_range(None, 0.5) == "–"


def test_the_outcomes_shown_are_those_of_the_latest_snapshot_in_the_readers_language(client, people):
    # The outcome part is rendered once per snapshot and language and kept (reports/views.py): a
    # new snapshot shows at once, and each language shows its own words and number formats.
    make_snapshot(n_patients=30)
    login_as(client, people["coordinator"])
    english = client.get(dashboard_url("all")).content.decode()
    assert "Baseline characteristics" in english and "N = 30" in english

    dutch = client.get(dashboard_url("all"), headers={"accept-language": "nl"}).content.decode()
    assert "Baseline characteristics" not in dutch and "N = 30" in dutch
    assert "Baseline characteristics" in client.get(dashboard_url("all")).content.decode()

    make_snapshot(data_version=42, n_patients=31)
    html = client.get(dashboard_url("all")).content.decode()
    assert '<th scope="col" class="text-end">N = 31</th>' in html and "31 patients included" in html
    assert '<th scope="col" class="text-end">N = 30</th>' not in html


def test_a_nurse_sees_her_own_centre_by_default(client, people):
    make_snapshot("AMC", n_patients=12)
    make_snapshot("all")
    login_as(client, people["nurse_a"])

    response = client.get(dashboard_url())

    assert response.status_code == 200
    assert response.context["scope"] == "AMC"
    assert response.context["n_patients"] == 12
    assert [code for code, _label in response.context["choices"]] == ["AMC"]
    assert 'href="/outcomes/all/"' not in response.content.decode()


def test_a_coordinator_has_all_centres_and_each_centre(client, people):
    make_snapshot("UMCU", n_patients=7)
    login_as(client, people["coordinator"])

    default = client.get(dashboard_url())
    centre = client.get(dashboard_url("UMCU"))

    assert default.context["scope"] == "all"
    assert [code for code, _label in default.context["choices"]] == ["all", "AMC", "UMCU"]
    html = default.content.decode()
    for scope in ("all", "AMC", "UMCU"):
        assert f'href="/outcomes/{scope}/"' in html
    assert centre.status_code == 200 and centre.context["n_patients"] == 7
    assert 'aria-current="page" href="/outcomes/UMCU/"' in centre.content.decode()


@pytest.mark.parametrize(
    ("persona", "scope"),
    [
        ("nurse_b", "AMC"),
        ("nurse_a", "UMCU"),
        ("nurse_a", "all"),
        ("nurse_b", "all"),
        ("admin", "all"),  # an admin reads her own centre, not every centre
        ("nurse_a", "XYZ"),
    ],
)
def test_a_scope_the_user_may_not_read_is_not_found(client, people, persona, scope):
    make_snapshot(scope)
    login_as(client, people[persona])

    assert client.get(dashboard_url(scope)).status_code == 404
    assert client.get(reverse("reports:status", args=[scope])).status_code == 404


def test_it_says_not_computed_yet_without_a_snapshot(client, people):
    login_as(client, people["nurse_a"])

    response = client.get(dashboard_url("AMC"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "have not been computed yet" in html
    assert 'id="updating"' not in html and "<svg" not in html


def test_it_shows_the_updating_state_while_a_recompute_is_pending(client, people):
    make_snapshot("AMC")
    make_pending("AMC")
    make_pending("UMCU")
    login_as(client, people["nurse_a"])

    response = client.get(dashboard_url("AMC"))

    html = response.content.decode()
    assert 'id="updating"' in html and "This page refreshes itself" in html
    assert 'data-updating="true"' in html
    assert 'data-status-url="/outcomes/AMC/status.json"' in html
    assert "/static/js/dashboard.js" in html
    assert "10/27" in html  # the previous figures stay on the page meanwhile


def test_it_shows_the_updating_state_before_the_first_snapshot(client, people):
    request = make_pending("AMC")
    RecomputeRequest.objects.filter(pk=request.pk).update(status=RecomputeRequest.Status.RUNNING)
    login_as(client, people["nurse_a"])

    html = client.get(dashboard_url("AMC")).content.decode()

    assert "have not been computed yet" in html and 'id="updating"' in html


def test_the_status_document_says_what_the_page_polls_for(client, people, django_assert_max_num_queries):
    login_as(client, people["nurse_a"])
    url = reverse("reports:status", args=["AMC"])
    assert client.get(url).json() == {"updating": False, "data_version": None, "computed_at": None}

    make_pending("AMC")
    assert client.get(url).json() == {"updating": True, "data_version": None, "computed_at": None}

    make_snapshot("AMC", data_version=42)
    RecomputeRequest.objects.filter(scope="AMC").update(status=RecomputeRequest.Status.DONE)
    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        response = client.get(url)
    assert response.json() == {"updating": False, "data_version": 42, "computed_at": "2025-03-14T09:30:00+00:00"}
    assert "no-cache" in response["Cache-Control"]
    # The page carries the same values, for the script to compare.
    html = client.get(dashboard_url("AMC")).content.decode()
    assert 'data-computed-at="2025-03-14T09:30:00+00:00"' in html and 'data-data-version="42"' in html


def test_the_views_only_answer_get(client, people):
    login_as(client, people["coordinator"])

    assert client.post(dashboard_url("all")).status_code == 405
    assert client.post(reverse("reports:status", args=["all"])).status_code == 405


def test_the_query_count_does_not_grow_with_the_centres_or_the_curve(client, people, django_assert_max_num_queries):
    from cohort.services import centre_create

    for number in range(8):
        centre_create(code=f"C{number}X", name=f"Synthetic Centre {number}")
    result = outcome_result()
    long_curve = [step(day, 1 - day / 2000, 0.5, 0.99, 500 - day // 2, 1, day % 2) for day in range(1, 900)]
    make_snapshot(drug_survival=result["drug_survival"] | {"curve": long_curve})
    login_as(client, people["coordinator"])
    client.get(dashboard_url("all"))

    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        response = client.get(dashboard_url("all"))

    assert len(response.context["choices"]) == 11


def test_it_speaks_dutch(client, people):
    make_snapshot("AMC")
    make_pending("AMC")
    login_as(client, people["nurse_a"])

    html = client.get(dashboard_url("AMC"), headers={"accept-language": "nl"}).content.decode()

    assert "Berekend op 14 mrt 2025, 10:30" in html
    assert "uit de gegevens van versie 41 (algoritme 1.0.0)" in html
    assert "Bijwerken: de gegevens zijn gewijzigd" in html
    assert "Aantal nog gevolgd" in html and "Klinische remissie, geobserveerd" in html
    assert "38,5 (29,3–51,0)" in html  # Dutch decimal commas


@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_page_refreshes_itself_when_the_recompute_is_done(page, live_server):  # noqa: F811
    """Real Chromium (tests/test_browser.py's `page`): the updating state, then the script's reload
    once the new snapshot is stored. Screenshots go to test-output/screenshots/."""
    from django.test import Client
    from playwright.sync_api import expect

    from tests.base import personae
    from tests.test_browser import TIMEOUT_MS, shot

    expect.set_options(timeout=TIMEOUT_MS)
    people = personae()
    RecomputeRequest.objects.all().delete()  # whatever the set-up's changes asked for
    make_snapshot("all", data_version=41)
    request = make_pending("all", data_version=42)
    # Signed in as the coordinator (MFA verified) through the test client's session.
    client = login_as(Client(), people["coordinator"])
    session = client.cookies["sessionid"].value
    page.context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])

    page.goto(f"{live_server.url}/outcomes/")
    expect(page.locator("#updating")).to_be_visible()
    expect(page.locator("#computed-at")).to_contain_text("version 41")
    expect(page.locator("#remission")).to_contain_text("10/27")
    shot(page, "10-dashboard-updating")

    make_snapshot("all", data_version=42, computed_at=COMPUTED_AT + dt.timedelta(minutes=5))
    RecomputeRequest.objects.filter(pk=request.pk).update(status=RecomputeRequest.Status.DONE)

    expect(page.locator("#computed-at")).to_contain_text("version 42")
    expect(page.locator("#updating")).to_have_count(0)
    expect(page.locator("svg.km-curve")).to_be_visible()
    expect(page.locator("#scopes a.active")).to_have_text("All centres")
    shot(page, "10-dashboard")

    # A coordinator leaves the page open; a nurse's save asks for a recompute: the page notices by
    # itself (it polls while current too), shows the updating state, then the new figures.
    page.evaluate("window.loadedOnce = true")
    request = make_pending("all", data_version=43)
    expect(page.locator("#updating")).to_be_visible(timeout=15_000)
    assert page.evaluate("window.loadedOnce === undefined")  # it reloaded
    make_snapshot("all", data_version=43, computed_at=COMPUTED_AT + dt.timedelta(minutes=9))
    RecomputeRequest.objects.filter(pk=request.pk).update(status=RecomputeRequest.Status.DONE)
    expect(page.locator("#computed-at")).to_contain_text("version 43")
    expect(page.locator("#updating")).to_have_count(0)
