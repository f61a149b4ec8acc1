"""Numbers as people type them (SPEC section 6, "Numbers"; issue 10): in Dutch 12,5 and 12.5 both
mean 12.5, in English a comma is refused with a message; a separator that cannot be read is refused,
never dropped; whole numbers take digits only. Values are shown in the user's number style in the
form, the casebook's history, the conflict message and the printed casebook. (The browser side, where
Chromium used to turn 12,5 into 125, is in test_browser.py.)"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from cohort.forms import AssessmentForm, UstekinumabDoseForm
from cohort.models import Assessment
from tests.base import T0

WEEK_8 = {
    "not_done": "no",
    "assessment_date": (T0 + dt.timedelta(days=56)).isoformat(),
    "hbi": "4",
    "corticosteroids": "no",
    "form_status": "incomplete",
}


def read(language: str, **typed) -> AssessmentForm:
    """The week 8 form as posted by a user of `language` who typed `typed`, with its messages as
    that user reads them (`form.messages`)."""
    with translation.override(language):
        form = AssessmentForm(data={**WEEK_8, **typed}, instance=Assessment(visit="week_8"))
        form.is_valid()
        form.messages = {field: [str(message) for message in messages] for field, messages in form.errors.items()}
    return form


def errors(form: AssessmentForm, field: str) -> list[str]:
    return form.messages.get(field, [])


def test_in_dutch_a_comma_and_a_point_both_mean_the_decimal_point():
    for typed, value in [
        ("12,5", Decimal("12.5")),
        ("12.5", Decimal("12.5")),
        (" 4,5 ", Decimal("4.5")),
        (",5", Decimal("0.5")),
        ("0.800", Decimal("0.8")),  # a leading zero is never a thousands group
        ("12,50", Decimal("12.5")),  # the trailing zero is not a second decimal
        ("7", Decimal("7")),
    ]:
        form = read("nl", crp_mg_l=typed)
        assert errors(form, "crp_mg_l") == [], typed
        assert form.cleaned_data["crp_mg_l"] == value, typed


def test_in_english_a_point_is_read_and_a_comma_refused_with_a_message():
    assert read("en", crp_mg_l="12.5").cleaned_data["crp_mg_l"] == Decimal("12.5")
    for typed in ("12,5", "4,5", "1,800", ",5"):
        form = read("en", crp_mg_l=typed)
        assert errors(form, "crp_mg_l") == [
            "Write decimals with a point, as in 12.5; a comma is not read as part of a number."
        ], typed
        assert "crp_mg_l" not in form.cleaned_data


def test_in_dutch_a_point_before_three_digits_is_refused_as_ambiguous_not_guessed():
    form = read("nl", fcal_ug_g="1.800")
    assert errors(form, "fcal_ug_g") == ["“1.800” kan 1800 of 1,8 betekenen: schrijf wat u bedoelt."]
    form = read("nl", crp_mg_l="2.500")
    assert errors(form, "crp_mg_l") == ["“2.500” kan 2500 of 2,5 betekenen: schrijf wat u bedoelt."]
    # Written either way it is read.
    assert read("nl", fcal_ug_g="1800").cleaned_data["fcal_ug_g"] == Decimal("1800")
    assert read("nl", fcal_ug_g="1,8").cleaned_data["fcal_ug_g"] == Decimal("1.8")


def test_thousands_separators_and_other_writing_are_refused_in_both_languages():
    dutch = "Vul een getal in, zoals 12,5, zonder scheidingstekens voor duizendtallen."
    english = "Enter a number, such as 12.5, without thousands separators."
    for language, message in (("nl", dutch), ("en", english)):
        for typed in ("1.800,5", "1,800.5", "1 800", "1.800.000", "12,", "1e3", "+5", "--5", "abc", "１２"):
            form = read(language, fcal_ug_g=typed)
            assert errors(form, "fcal_ug_g") == [message], (language, typed)
            assert "fcal_ug_g" not in form.cleaned_data


def test_a_whole_number_takes_digits_only_never_another_number():
    # Django's own field read 1.000 as 1 and 2,0 (in Dutch) as 2.
    for language, message in (
        ("nl", "Vul een heel getal in, zonder punt of komma."),
        ("en", "Enter a whole number, without a point or a comma."),
    ):
        for typed in ("1.000", "2,0", "1.5", "2.", "1e1"):
            form = read(language, hbi_stools=typed)
            assert errors(form, "hbi_stools") == [message], (language, typed)
        assert read(language, hbi_stools=" 12 ").cleaned_data["hbi_stools"] == 12


@pytest.mark.parametrize(("language", "shown"), [("nl", "12,5"), ("en", "12.5")])
def test_the_form_shows_a_stored_value_in_the_users_style_in_a_text_input(language, shown):
    with translation.override(language):
        form = AssessmentForm(
            instance=Assessment(visit="week_8", crp_mg_l=Decimal("12.5"), fcal_ug_g=Decimal("1200.5"), hbi_stools=3)
        )
        crp, fcal, stools = str(form["crp_mg_l"]), str(form["fcal_ug_g"]), str(form["hbi_stools"])
        weight = str(UstekinumabDoseForm(initial={"weight_kg": Decimal("72.5")})["weight_kg"])
    assert f'value="{shown}"' in crp and 'type="text"' in crp and 'inputmode="decimal"' in crp
    assert f'value="{shown.replace("12", "1200")}"' in fcal  # never grouped (1.200,5 would not be read back)
    assert 'value="3"' in stools and 'type="text"' in stools and 'inputmode="numeric"' in stools
    assert f'value="{shown.replace("12", "72")}"' in weight and 'type="text"' in weight
    assert 'type="number"' not in crp + fcal + stools + weight


@pytest.mark.django_db
def test_a_dutch_nurse_saves_12_comma_5_and_the_casebook_shows_it_her_way(client, people, patient):
    client.force_login(people["nurse_a"])
    url = reverse("cohort:form", args=[patient.study_id, "week_8"])
    client.post(reverse("language-set"), {"language": "nl", "next": url})
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    assert week_8.crp_mg_l == Decimal("4.5")

    data = {**WEEK_8, "hbi": "4", "crp_mg_l": "12,5", "fcal_ug_g": "150", "version": str(week_8.version)}
    response = client.post(url, data)

    assert response.status_code == 302
    week_8.refresh_from_db()
    assert week_8.crp_mg_l == Decimal("12.5")
    assert 'value="12,5"' in client.get(url).content.decode()
    casebook = client.get(reverse("cohort:patient-detail", args=[patient.study_id])).content.decode()
    assert "4,5 → 12,5" in casebook
    history = client.get(reverse("cohort:patient-history", args=[patient.study_id])).content.decode()
    assert "4,5 → 12,5" in history

    client.post(reverse("language-set"), {"language": "en", "next": url})
    assert 'value="12.5"' in client.get(url).content.decode()
    history = client.get(reverse("cohort:patient-history", args=[patient.study_id])).content.decode()
    assert "4.5 → 12.5" in history


@pytest.mark.django_db
def test_in_english_12_comma_5_is_refused_at_the_field_and_nothing_is_saved(client, people, patient):
    client.force_login(people["nurse_a"])
    url = reverse("cohort:form", args=[patient.study_id, "week_8"])
    before = list(Assessment.objects.filter(patient=patient).values())
    week_8 = Assessment.objects.get(patient=patient, visit="week_8")

    response = client.post(url, {**WEEK_8, "crp_mg_l": "12,5", "version": str(week_8.version)})

    assert response.status_code == 200
    assert response.context["form"].errors["crp_mg_l"] == [
        "Write decimals with a point, as in 12.5; a comma is not read as part of a number."
    ]
    assert 'value="12,5"' in response.content.decode()  # what was typed stays, to be corrected
    assert list(Assessment.objects.filter(patient=patient).values()) == before


@pytest.mark.django_db
def test_the_conflict_message_shows_the_values_in_the_users_style(people, patient):
    from django.test import Client

    first, second = Client(), Client()
    for client in (first, second):
        client.force_login(people["nurse_a"])
    url = reverse("cohort:form", args=[patient.study_id, "week_8"])
    second.post(reverse("language-set"), {"language": "nl", "next": url})
    opened = str(Assessment.objects.get(patient=patient, visit="week_8").version)

    assert first.post(url, {**WEEK_8, "crp_mg_l": "11.5", "version": opened}).status_code == 302
    response = second.post(url, {**WEEK_8, "crp_mg_l": "22,5", "version": opened})

    assert response.status_code == 200
    assert ("C-reactief proteïne (mg/L)", "4,5", "11,5") in response.context["form"].conflict
    assert Assessment.objects.get(patient=patient, visit="week_8").crp_mg_l == Decimal("11.5")


@pytest.mark.django_db
def test_the_printed_casebook_shows_values_and_changes_in_its_language(people, patient):
    from cohort.services import crf_row_save
    from reports.report_context import casebook_context

    week_8 = Assessment.objects.get(patient=patient, visit="week_8")
    week_8.crp_mg_l = Decimal("12.5")
    crf_row_save(row=week_8, by=people["nurse_a"], expected_version=week_8.version)

    for language, then, now in (("nl", "4,5", "12,5"), ("en", "4.5", "12.5")):
        with translation.override(language):
            context = casebook_context(patient)
        visit = next(form for form in context["forms"] if form["key"] == "week_8")
        values = {value["label"]: value["value"] for value in visit["entries"][0]["values"]}
        label = "C-reactief proteïne (mg/L)" if language == "nl" else "C-reactive protein (mg/L)"
        assert values[label] == now, language
        changes = [change for entry in context["history"] for change in entry["changes"] if change["label"] == label]
        assert {"label": label, "old": then, "new": now} in changes, language
