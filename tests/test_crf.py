"""The CRF registry (cohort/crf.py) is the one list of forms: what else names forms follows it."""

from __future__ import annotations

import dataclasses

from django.urls import reverse

from cohort import crf, dictionary
from cohort.forms import form_class
from tests.test_permissions import keys_of, url_patterns


def test_the_files_are_the_dictionarys_forms_in_its_order():
    assert list(crf.FILES) == list(dictionary.forms())


def test_the_casebook_lists_every_form_once_with_the_assessment_once_per_visit():
    assert [form.key for form in crf.FORMS] == [
        "patient",
        "prior_biologics",
        "doses",
        "reinduction",
        "week_0",
        "week_8",
        "week_20",
        "week_52",
        "follow_up",
        "adverse_events",
    ]
    assert [form.key for form in crf.FORMS if form.name == "assessments"] == ["week_0", "week_8", "week_20", "week_52"]


def test_the_urls_take_exactly_the_registrys_keys():
    patterns = url_patterns()
    assert keys_of(patterns["cohort:form"]) == [form.key for form in crf.FORMS if not form.repeating]
    assert keys_of(patterns["cohort:rows"]) == [form.key for form in crf.FORMS if form.repeating]
    for form in crf.FORMS:
        name = "cohort:rows" if form.repeating else "cohort:form"
        assert reverse(name, args=["AMC-001", form.key]).endswith(f"/{form.key}/")


def test_each_forms_browser_form_asks_the_dictionarys_variables_and_nothing_else():
    for form in crf.FORMS:
        asked = list(form_class(form)._meta.fields)
        assert asked == [*form.fields, "form_status"], form.key
        assert not set(asked) & crf.NOT_INPUT


def test_the_record_has_a_place_for_every_form():
    attributes = {f.name for f in dataclasses.fields(crf.PatientRecord)} - {"confirmed"}
    assert attributes == {form.attribute for form in crf.FILES.values()}


def test_save_and_next_walks_the_casebook_in_order():
    key, seen = crf.FORMS[0].key, []
    while key:
        seen.append(key)
        following = crf.next_form(key)
        key = following.key if following else None
    assert seen == [form.key for form in crf.FORMS]


def test_every_input_field_is_on_its_page_even_one_the_layout_does_not_place():
    """Adding a variable is a dictionary + model + migration change: the page shows it unasked."""
    from crispy_forms.utils import render_crispy_form

    for form in crf.FORMS:
        browser_form = form_class(form)(instance=form.model())
        html = render_crispy_form(browser_form)
        for name in form.fields:
            assert f'name="{name}"' in html, (form.key, name)

    class Unplaced(form_class(crf.form("follow_up"))):
        layout = ()  # places nothing

    html = render_crispy_form(Unplaced(instance=crf.form("follow_up").model()))
    assert all(f'name="{name}"' in html for name in crf.form("follow_up").fields)
