"""The CRF registry (cohort/crf.py) is the one list of forms: what else names forms follows it."""

from __future__ import annotations

import dataclasses

import pytest
from django.urls import reverse
from django.utils.html import format_html

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


def _crispy_html(form, field_template: str, monkeypatch) -> str:
    """The form as crispy renders it with `field_template` for every field, whitespace collapsed."""
    import re

    from crispy_forms.utils import render_crispy_form

    from cohort import forms as crf_forms

    monkeypatch.setattr(crf_forms, "FIELD_TEMPLATE", field_template)
    form.helper.field_template = field_template
    html = render_crispy_form(form)
    monkeypatch.undo()
    return re.sub(r"\s+", " ", html)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "nl"])
def test_the_one_pass_field_template_renders_what_crispys_own_does(language, monkeypatch):
    """cohort/forms.FIELD_TEMPLATE is a faster copy of crispy-bootstrap5's field template for the CRF
    forms: every form, new and stored, with errors at its fields, questions in its help and
    read-only, renders the same HTML (whitespace aside) either way."""
    from django.utils import translation

    from cohort.forms import FIELD_TEMPLATE
    from cohort.views import EnrolForm
    from tests.base import make_patient, make_record, personae

    people = personae()
    patient = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    with translation.override(language):
        for case_form in crf.FORMS:
            stored = case_form.model.objects.filter(
                **(
                    {"pk": patient.pk}
                    if case_form.model is type(patient)
                    else {"patient": patient, **case_form.row_match}
                )
            ).first()
            browser_form = form_class(case_form)
            # Every field refused (numbers and dates unreadable, choices not among the codes).
            refused = {name: "1.000,5x" for name in case_form.fields} | {"reason_for_change": ""}
            variants = [("new", None, case_form.model()), ("stored", None, stored), ("errors", refused, stored)]
            for variant, data, instance in variants:
                one_pass, crispys = browser_form(data, instance=instance), browser_form(data, instance=instance)
                in_python = browser_form(data, instance=instance)
                if variant == "errors":
                    assert not one_pass.is_valid() and not crispys.is_valid() and not in_python.is_valid()
                    assert one_pass.errors
                if variant == "stored":
                    for form in (one_pass, crispys, in_python):  # read-only, a question beside a field
                        for field in form.fields.values():
                            field.disabled = True
                        first = case_form.fields[0]
                        form.fields[first].help_text = format_html('{}<span class="query-note">Q #1</span>', "x")
                # The layout rendered in Python (the form pages' {% crf_form %}): crispy's, byte for byte.
                assert _in_python(in_python) == _crispy_tag(one_pass), (case_form.key, variant, language)
                assert _crispy_html(one_pass, FIELD_TEMPLATE, monkeypatch) == _crispy_html(
                    crispys, "bootstrap5/field.html", monkeypatch
                ), (case_form.key, variant, language)
        enrol = [EnrolForm(data, user=people["nurse_a"]) for data in (None, {"centre": "x"}) for _ in range(3)]
        for one_pass, crispys, in_python in (enrol[:3], enrol[3:]):
            assert _in_python(in_python) == _crispy_tag(one_pass)
            assert _crispy_html(one_pass, FIELD_TEMPLATE, monkeypatch) == _crispy_html(
                crispys, "bootstrap5/field.html", monkeypatch
            )


def _crispy_tag(form) -> str:
    """The form as the page's {% crispy form %} rendered it."""
    from django.template import Context, Template

    return Template("{% load crispy_forms_tags %}{% crispy form %}").render(Context({"form": form}))


def _in_python(form) -> str:
    """The form as cohort.forms.render_crf_form renders it (never left to crispy for these forms)."""
    from cohort.forms import render_crf_form

    html = render_crf_form(form)
    assert html is not None
    return html


def test_the_crf_widgets_render_what_djangos_do():
    """cohort/forms' widgets make Django's HTML in Python: the same as Django's own for every field of
    the CRF, with no value, values to escape, each code of a choice and one that is not, and crispy's
    and the page's attributes."""
    import copy
    import datetime as dt
    import itertools
    from decimal import Decimal

    from django import forms
    from django.utils import translation

    from cohort.forms import CrfForm, DateInput, HiddenInput, Select, TextInput

    attributes = [
        {},
        {"class": "select form-select is-invalid", "disabled": True, "aria-describedby": 'id_x_helptext"<'},
        {"required": True, "hidden": False, "data-x": "a & b"},
    ]
    fields = [("reason_for_change", CrfForm.base_fields["reason_for_change"])]
    for case_form in crf.FORMS:
        fields += list(form_class(case_form)().fields.items())
    seen = set()
    for name, field in fields:
        widget = field.widget
        if isinstance(widget, forms.Textarea):
            continue
        assert isinstance(widget, TextInput | DateInput | Select | HiddenInput), (name, type(widget))
        seen.add(type(widget))
        djangos = copy.copy(widget)
        djangos.__class__ = next(cls for cls in type(widget).__mro__ if cls.__module__ == "django.forms.widgets")
        djangos.input_type = widget.input_type  # the date picker's "date" is ours, not the HTML's making
        if isinstance(widget, Select):
            codes = [code for code, _label in field.choices]
            values = [None, "", *codes, "not-a-code", ["x", codes[-1]]]
        else:
            values = [None, "", "12,5", '<b>"&amp;', dt.date(2024, 1, 31), Decimal("12.50"), 7]
        for value, extra, language in itertools.product(values, attributes, ("en", "nl", "en")):
            attrs = {"id": f"id_{name}", **extra}
            with translation.override(language):  # a choice's label: translated once per language
                ours, theirs = widget.render(name, value, attrs=attrs), djangos.render(name, value, attrs=attrs)
            assert ours == theirs, (name, value, extra, language)
    assert seen == {TextInput, DateInput, Select, HiddenInput}
    grouped = [("Group <1>", [("a", "A & a"), ("b", "B")]), ("c", "C")]
    assert Select(choices=grouped).render("g", "b") == forms.Select(choices=grouped).render("g", "b")
