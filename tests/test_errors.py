"""Errors a nurse can act on (issue 13, item 1), through HTTP: each error beside the field it is
about, in the field's words (never a variable name), once, in English and in Dutch; another form's
problem names and links that form and its value; one save reports every problem at once."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.urls import reverse

from cohort import crf
from cohort.forms import form_class
from cohort.models import AdverseEvent, Assessment, FollowUp, Patient, PriorBiologic, Reinduction, UstekinumabDose
from tests.base import T0, make_patient, make_record

pytestmark = pytest.mark.django_db

NOTHING_SAVED = {"en": "Nothing was saved", "nl": "Er is niets opgeslagen"}


@pytest.fixture
def nurse(client, people):
    client.force_login(people["nurse_a"])
    return client


@pytest.fixture
def patient(people):
    return make_record(make_patient(people["centre_a"], people["nurse_a"]))


def url_of(patient, key: str) -> str:
    view = "cohort:rows" if crf.form(key).repeating else "cohort:form"
    return reverse(view, args=[patient.study_id, key])


def row_data(key: str, row, **overrides) -> dict:
    """What the form's page would post for `row` as it stands, with `overrides` typed over it."""
    form = form_class(crf.form(key))(instance=row)
    data = {}
    for name in form.fields:
        value = form[name].value()
        data[name] = "" if value is None else value.isoformat() if isinstance(value, dt.date) else str(value)
    if row.pk and crf.form(key).repeating:
        data["row"] = str(row.pk)
    data.update({name: str(value) for name, value in overrides.items()})
    return data


def error_lists(page: str) -> dict[str, list[str]]:
    """The errors shown beside each field (crispy's block under the input), by field name."""
    found: dict[str, list[str]] = {}
    for name, text in re.findall(
        r'<(?:p|span) id="error_\d+_id_(\w+)"><strong>(.*?)</strong></(?:p|span)>', page, re.S
    ):
        found.setdefault(name, []).append(html.unescape(re.sub(r"<[^>]+>", "", text)).strip())
    return found


def field_errors(page: str) -> dict[str, str]:
    return {name: " ".join(errors) for name, errors in error_lists(page).items()}


def shown_once(page: str) -> None:
    """Every error is on the page as often as fields carry it (two fields may share a rule), never
    repeated in a box at the top."""
    lists = error_lists(page)
    text = visible_text(page)
    for errors in lists.values():
        assert len(errors) == len(set(errors)), errors
        for error in errors:
            assert text.count(error) == sum(other.count(error) for other in lists.values()), error


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def new_rows(patient):
    return {
        "prior_biologics": PriorBiologic(patient=patient),
        "doses": UstekinumabDose(patient=patient),
        "adverse_events": AdverseEvent(patient=patient),
    }


def existing(patient, key: str):
    return crf.form(key).single_row(patient)


VALID_PRIOR = {
    "agent": "golimumab",
    "start_date": "2016-01-01",
    "stop_date": "2017-01-01",
    "stop_reason": "intolerance",
}
VALID_DOSE = {
    "dose_date": (T0 + dt.timedelta(days=56)).isoformat(),
    "phase": "maintenance",
    "route": "sc",
    "dose_mg": 90,
}
VALID_EVENT = {
    "onset_date": (T0 + dt.timedelta(days=60)).isoformat(),
    "category": "headache",
    "description": "Headache",
    "serious": "no",
    "causality": "possible",
    "outcome": "resolved",
    "led_to_discontinuation": "no",
}

HBI_PARTS = {"hbi_wellbeing": 1, "hbi_pain": 1, "hbi_stools": 2, "hbi_mass": 0, "hbi_complications": 0}

# (form, overrides, field, English words, Dutch words): one scenario per rule.
SCENARIOS = [
    ("week_8", {"hbi_pain": 7}, "hbi_pain", "must be between 0 and 3.", "moet tussen 0 en 3 liggen."),
    ("week_8", {"hbi": 9, **HBI_PARTS}, "hbi", "must equal the sum of its five", "moet gelijk zijn aan de som"),
    (
        "week_8",
        {"assessment_date": "2022-02-01"},
        "assessment_date",
        "re-induction dose date (1 Mar 2022)",
        "herinductie",
    ),
    ("week_8", {"ses_cd": 4, "endoscopy_done": ""}, "ses_cd", "only be given when an endoscopy was done", "endoscopie"),
    ("week_8", {"not_done": "yes", "not_done_reason": "missed"}, "not_done", "has no measurements", "geen metingen"),
    ("week_8", {"not_done_reason": "missed"}, "not_done_reason", "must be empty when the visit", "moet leeg zijn"),
    ("week_0", {"assessment_date": "2022-03-20"}, "assessment_date", "within 14 days", "binnen 14 dagen"),
    ("patient", {"consent": "no"}, "consent", "must be yes: a patient", "moet ja zijn: een patiënt"),
    ("patient", {"diagnosis_year": 1950}, "diagnosis_year", "on or after the year of birth", "geboortejaar"),
    ("prior_biologics", {**VALID_PRIOR, "agent": "other"}, "agent_other", "when the agent is “other”", "middel"),
    ("prior_biologics", {**VALID_PRIOR, "stop_date": "2015-01-01"}, "stop_date", "after the start date", "startdatum"),
    (
        "prior_biologics",
        {**VALID_PRIOR, "stop_date": "2021-06-01"},
        "stop_date",
        "before the first ustekinumab",
        "vóór",
    ),
    ("doses", {**VALID_DOSE, "route": "iv", "dose_mg": 2000}, "dose_mg", "between 130 and 1040 mg", "intraveneuze"),
    ("doses", {**VALID_DOSE, "phase": "initial_induction"}, "route", "must be intravenous", "moet intraveneus"),
    ("reinduction", {"initial_response": "no"}, "initial_response", "initial response", "eerste respons"),
    ("reinduction", {"lor_date": "2022-04-01"}, "lor_date", "must lie between the initial induction", "moet tussen"),
    ("reinduction", {"lor_clinical": "no"}, "lor_clinical", "at least one of clinical", "minstens één"),
    ("follow_up", {"status": "discontinued"}, "discontinuation_date", "required when the status", "is verplicht"),
    ("follow_up", {"last_follow_up_date": "2023-01-01"}, "last_follow_up_date", "every assessment date", "elke"),
    ("follow_up", {"adverse_events_any": "no"}, "adverse_events_any", "is no, but 1 adverse", "is nee, maar"),
    ("adverse_events", {**VALID_EVENT, "onset_date": "2022-02-01"}, "onset_date", "re-induction dose date", "inductie"),
]


def post(client, patient, key: str, overrides: dict, language: str):
    row = new_rows(patient).get(key) or existing(patient, key)
    return client.post(url_of(patient, key), row_data(key, row, **overrides), HTTP_ACCEPT_LANGUAGE=language)


def snapshot(patient) -> list:
    return [
        list(model.objects.filter(patient=patient).order_by("pk").values())
        for model in (PriorBiologic, UstekinumabDose, Reinduction, Assessment, FollowUp, AdverseEvent)
    ] + [list(Patient.objects.filter(pk=patient.pk).values())]


@pytest.mark.parametrize("language", ["en", "nl"])
@pytest.mark.parametrize("key, overrides, field, english, dutch", SCENARIOS)
def test_each_error_is_beside_its_field_in_words_once(nurse, patient, key, overrides, field, english, dutch, language):
    before = snapshot(patient)
    response = post(nurse, patient, key, overrides, language)
    assert response.status_code == 200
    page = response.content.decode()
    errors = field_errors(page)
    words = english if language == "en" else dutch
    assert words in errors.get(field, ""), errors
    shown_once(page)
    assert NOTHING_SAVED[language] in page
    # In the nurse's words: no variable name (a name with an underscore, or 'name = value').
    variables = {f.name for model in crf.MODELS for f in model._meta.fields if "_" in f.name}
    shown = " ".join(errors.values())
    assert not [name for name in variables if name in shown], shown
    assert " = " not in shown
    assert snapshot(patient) == before


def test_the_rule_messages_are_all_in_dutch(nurse, patient):
    """No English rule message is left in the Dutch page of any scenario."""
    for key, overrides, field, english, _dutch in SCENARIOS:
        page = post(nurse, patient, key, overrides, "nl").content.decode()
        assert english not in field_errors(page).get(field, ""), (key, field)


def test_another_forms_problem_is_beside_the_date_that_caused_it_naming_and_linking_that_form(nurse, patient):
    """Moving the week 52 visit after the last follow-up breaks the follow-up form's rule."""
    for language, label in (("en", "Date of last follow-up"), ("nl", None)):
        response = post(nurse, patient, "week_52", {"assessment_date": "2023-06-01"}, language)
        page = response.content.decode()
        beside = field_errors(page)["assessment_date"]
        follow_up = FollowUp.objects.get(patient=patient)
        assert f'href="{url_of(patient, "follow_up")}"' in page
        # The other form's value, as people read it (the one date style of the language).
        assert {"en": "5 Apr 2023", "nl": "5 apr 2023"}[language] in beside
        if label:
            assert "Ustekinumab status at last follow-up" in beside and label in beside
            assert "must be on or after every assessment date" in beside
        else:
            assert "moet op of na elke beoordelingsdatum" in beside
        assert "last_follow_up_date" not in page.split('id="crf-form"')[1]
        shown_once(page)
        assert NOTHING_SAVED[language] in page
        assert follow_up.last_follow_up_date == T0 + dt.timedelta(days=400)
        assert Assessment.objects.get(patient=patient, visit="week_52").assessment_date == T0 + dt.timedelta(days=364)


def test_one_save_reports_type_range_rule_and_reason_together(nurse, patient):
    """A completed visit: an unreadable number, a value out of range, a broken rule and a missing
    reason for change are all reported by the first save."""
    week_8 = existing(patient, "week_8")
    Assessment.objects.filter(pk=week_8.pk).update(form_status="complete")
    week_8.refresh_from_db()
    response = post(nurse, patient, "week_8", {"fcal_ug_g": "abc", "crp_mg_l": "900", "ses_cd": 4}, "en")
    errors = field_errors(response.content.decode())
    assert "Enter a number" in errors["fcal_ug_g"]
    assert "must be between 0 and 500." in errors["crp_mg_l"]
    assert "only be given when an endoscopy was done" in errors["ses_cd"]
    assert "a reason for change is required" in errors["reason_for_change"]

    # The same without the unreadable number: the save service reports the rest together.
    response = post(nurse, patient, "week_8", {"crp_mg_l": "900"}, "nl")
    errors = field_errors(response.content.decode())
    assert "moet tussen 0 en 500 liggen." in errors["crp_mg_l"]
    assert "een reden voor de wijziging is verplicht" in errors["reason_for_change"]
    week_8.refresh_from_db()
    assert str(week_8.crp_mg_l) == "4.5"


def test_required_fields_do_not_hide_a_rule(nurse, patient):
    """An adverse event dated before the re-induction, its other fields still empty: the date's
    rule is reported with the required fields, not after they are filled."""
    response = post(nurse, patient, "adverse_events", {"onset_date": "2022-02-01"}, "en")
    errors = field_errors(response.content.decode())
    assert "must be on or after the re-induction dose date (1 Mar 2022)." in errors["onset_date"]
    assert "This field is required." in errors["category"]
    assert AdverseEvent.objects.filter(patient=patient).count() == 1


def test_an_unreadable_year_does_not_hide_the_consent_rule(nurse, patient):
    response = post(nurse, patient, "patient", {"birth_year": "19x5", "consent": "no"}, "nl")
    errors = field_errors(response.content.decode())
    assert "Vul een heel getal in, zonder punt of komma." in errors["birth_year"]
    assert "moet ja zijn: een patiënt" in errors["consent"]
    assert Patient.objects.get(pk=patient.pk).consent == "yes"
