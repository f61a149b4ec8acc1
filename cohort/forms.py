"""The case report forms in the browser (django-crispy-forms, Bootstrap 5).

Labels, units and help come from the models (which carry the data dictionary). Only the fields a
nurse enters are form fields: the centre, the study ID, the creator, the version and the visit are
never taken from a POST. Validation beyond the field types is the validation layer's
(cohort/validators.py), run by the services when saving.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal

from crispy_forms import layout
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Div, Fieldset, Layout
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import formats, translation
from django.utils.functional import Promise
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from cohort import crf
from cohort.models import (
    HBI_COMPONENTS,
    REASON_MAX_LENGTH,
    AdverseEvent,
    Assessment,
    FollowUp,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)

# The CRF's widgets: Django's, their HTML made here in Python rather than through Django's widget
# templates (an include per option and per attribute list: most of a form page's widget time).
# tests/test_crf.py holds each equal to Django's own for every field of the CRF.


def _escape(value) -> str:
    """django.utils.html.conditional_escape, without its lazy-string wrapper (an option's label and
    value, an attribute: a few hundred per form page)."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


# Lazy texts made once per process (the fields' labels and help texts, the choices' labels)
# translated once per process and language: a form page shows about a hundred, and translating one
# looks the active language up again each time. By id, the text itself kept with its translation
# (a live object's id is its own).
_TRANSLATED: dict[tuple[str, int], tuple[Promise, str]] = {}
_TRANSLATED_LIMIT = 20_000  # far above the CRF's texts times its languages


def _translated(value, language: str):
    """`value` as str() gives it in the active `language`: a lazy text's translation kept."""
    if not isinstance(value, Promise):
        return value
    key = (language, id(value))
    found = _TRANSLATED.get(key)
    if found is None or found[0] is not value:
        found = (value, str(value))
        if len(_TRANSLATED) < _TRANSLATED_LIMIT:
            _TRANSLATED[key] = found
    return found[1]


def _escape_text(value, language: str) -> str:
    """_escape of a label, a lazy one translated once per language (a lazy text has no __html__)."""
    return html.escape(_translated(value, language)) if isinstance(value, Promise) else _escape(value)


# Each list of plain choices' <option>s as Select renders them (not selected, and selected) for each
# language, made once per process: the CRF's choices are made once, and a form page has a few dozen
# options. By the choices' values and their labels' ids, the labels kept with them.
_OPTIONS: dict[tuple, tuple[tuple, tuple]] = {}
_OPTIONS_LIMIT = 2_000
_PLAIN_VALUES = (str, int, bool, type(None))


def _options(choices, language: str) -> tuple | None:
    """(the value as text, the <option>, the <option> selected) of each choice; None for choices with
    groups or other than values and texts (Select renders those through optgroups)."""
    choices = list(choices)  # a model field's, with the blank choice: a BlankChoiceIterator
    labels = tuple(label for _value, label in choices)
    if not all(type(value) in _PLAIN_VALUES for value, _label in choices) or not all(
        isinstance(label, str | Promise) for label in labels
    ):
        return None
    key = (language, tuple((value, id(label)) for (value, _label), label in zip(choices, labels, strict=True)))
    found = _OPTIONS.get(key)
    if found is not None and all(a is b for a, b in zip(found[0], labels, strict=True)):
        return found[1]
    options = []
    for value, label in choices:
        value = "" if value is None else value  # as ChoiceWidget.optgroups
        start, end = f'\n  <option value="{_escape(value)}"', f">{_escape_text(label, language)}</option>\n"
        options.append((str(value), start + end, start + " selected" + end))
    if len(_OPTIONS) < _OPTIONS_LIMIT:
        _OPTIONS[key] = (labels, tuple(options))
    return tuple(options)


def _html_attrs(attrs: dict) -> str:
    """django/forms/widgets/attrs.html: ` name="value"`, a True value as the bare name, False left out."""
    return "".join(
        f" {_escape(name)}" if value is True else f' {_escape(name)}="{_escape(value)}"'
        for name, value in attrs.items()
        if value is not False
    )


class OnePassInput:
    """Django's <input> (django/forms/widgets/input.html, attrs.html) made in one pass."""

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        widget = self.get_context(name, value, attrs)["widget"]
        shown = "" if widget["value"] is None else f' value="{_escape(widget["value"])}"'
        return SafeString(
            f'<input type="{_escape(widget["type"])}" name="{_escape(widget["name"])}"{shown}'
            f"{_html_attrs(widget['attrs'])}>"
        )


class TextInput(OnePassInput, forms.TextInput):
    pass


class HiddenInput(OnePassInput, forms.HiddenInput):
    pass


class Select(forms.Select):
    """Django's Select, its HTML (django/forms/widgets/select.html, select_option.html, attrs.html) made
    in one pass: through the templates, one include per option was most of a form page's widget time."""

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        language = translation.get_language()
        options = _options(self.choices, language)
        if options is not None:
            # Select.get_context without the options (ChoiceWidget's optgroups), which are kept.
            widget = forms.Widget.get_context(self, name, value, attrs)["widget"]
            if self.allow_multiple_selected:
                widget["attrs"]["multiple"] = True
            parts = [f'<select name="{_escape(widget["name"])}"{_html_attrs(widget["attrs"])}>']
            chosen, has_selected = widget["value"], False
            for text, shown, shown_selected in options:  # the selection as ChoiceWidget.optgroups makes it
                selected = (not has_selected or self.allow_multiple_selected) and text in chosen
                has_selected |= selected
                parts.append(shown_selected if selected else shown)
            parts.append("\n</select>")
            return SafeString("".join(parts))
        widget = self.get_context(name, value, attrs)["widget"]
        parts = [f'<select name="{_escape(widget["name"])}"{_html_attrs(widget["attrs"])}>']
        for group_name, options, _index in widget["optgroups"]:
            if group_name:
                parts.append(f'\n  <optgroup label="{_escape(group_name)}">')
            for option in options:
                parts.append(
                    f'\n  <option value="{_escape(option["value"])}"{_html_attrs(option["attrs"])}>'
                    f"{_escape_text(option['label'], language)}</option>\n"
                )
            if group_name:
                parts.append("\n  </optgroup>")
        parts.append("\n</select>")
        return SafeString("".join(parts))


class DateInput(OnePassInput, forms.DateInput):
    """ISO dates with the browser's date picker: unambiguous in every locale."""

    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%d")


# Numbers as people type them (SPEC section 6, "Numbers"). Not <input type=number>: Chromium drops or
# misreads a decimal comma there (12,5 arrives as 125). Text inputs, read here in the user's language.
WHOLE_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)
DECIMAL_NUMBER = re.compile(r"-?(?P<whole>[0-9]*)(?:(?P<separator>[.,])(?P<fraction>[0-9]+))?", re.ASCII)


class WholeNumberField(forms.IntegerField):
    """Digits only: a point or comma in a count or a year is refused, never read as another number
    (Django's own field reads 1.000 as 1)."""

    widget = TextInput
    default_error_messages = {"invalid": _("Enter a whole number, without a point or a comma.")}

    def to_python(self, value):
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if not WHOLE_NUMBER.fullmatch(text):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return int(text)

    def widget_attrs(self, widget):
        return {**super().widget_attrs(widget), "inputmode": "numeric", "autocomplete": "off"}


class DecimalNumberField(forms.DecimalField):
    """A decimal read in the user's language and shown in it (12,5 in Dutch, 12.5 in English).

    Where the decimal separator is a comma (Dutch), a point is read as one too, since people type
    both, except where it could be a thousands separator: a point followed by exactly three digits
    (1.800) is refused as ambiguous rather than guessed. Thousands separators are never accepted,
    and where the decimal separator is a point a comma is refused, never dropped."""

    widget = TextInput
    default_error_messages = {
        "invalid": _("Enter a number, such as 12.5, without thousands separators."),
        "comma": _("Write decimals with a point, as in 12.5; a comma is not read as part of a number."),
        "ambiguous": _("“%(value)s” could mean %(whole)s or %(decimal)s: write the one you mean."),
    }

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "localize": True})  # the stored value shown in the user's style

    def to_python(self, value):
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        separator = formats.get_format("DECIMAL_SEPARATOR")
        number = DECIMAL_NUMBER.fullmatch(text)
        if number is None or not (number["whole"] or number["fraction"]):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if number["separator"] and number["separator"] not in (separator, "."):
            raise ValidationError(self.error_messages["comma"], code="comma")
        if (
            separator != "."
            and number["separator"] == "."
            and len(number["fraction"]) == 3
            and number["whole"].lstrip("0")
        ):
            read = Decimal(text.replace(",", "."))
            raise ValidationError(
                self.error_messages["ambiguous"],
                code="ambiguous",
                params={
                    "value": text,
                    "whole": text.replace(".", ""),
                    "decimal": formats.number_format(read.normalize()),
                },
            )
        # 12,50 is 12.5: trailing zeros are not more decimal places than the field keeps.
        fraction = (number["fraction"] or "").rstrip("0")
        sign = "-" if text.startswith("-") else ""
        return Decimal(f"{sign}{number['whole'] or '0'}{'.' + fraction if fraction else ''}")

    def widget_attrs(self, widget):
        return {**super().widget_attrs(widget), "inputmode": "decimal", "autocomplete": "off"}


# The one mapping from a model's number fields to ours; the admin's CRF forms use it too.
NUMBER_FORM_FIELDS = {models.DecimalField: DecimalNumberField, models.IntegerField: WholeNumberField}


def crf_formfield(model_field, **kwargs):
    """The form field of a CRF model field: numbers as typed, choices and text in the widgets above,
    the rest as Django makes them."""
    if model_field.choices:
        return model_field.formfield(**{"widget": Select, **kwargs})
    if isinstance(model_field, models.CharField):
        return model_field.formfield(**{"widget": TextInput, **kwargs})
    for model_class, form_class in NUMBER_FORM_FIELDS.items():
        if isinstance(model_field, model_class):
            return model_field.formfield(form_class=form_class, **kwargs)
    return model_field.formfield(**kwargs)


# Each CRF field in one template pass: the HTML of crispy-bootstrap5's field template for these forms,
# which renders every field through nested includes (about half of a form page's time).
FIELD_TEMPLATE = "cohort/includes/_field.html"


class Field(layout.Field):
    """crispy's Field, rendered with FIELD_TEMPLATE."""

    def get_template_name(self, template_pack):
        return FIELD_TEMPLATE


class CrfForm(forms.ModelForm):
    """A CRF form: its fields, the reason for change (asked for when editing a completed form) and
    the version the user loaded (for the optimistic lock; never written)."""

    version = forms.IntegerField(widget=HiddenInput, required=False)
    reason_for_change = forms.CharField(
        label=_("Reason for change"),
        required=False,
        max_length=REASON_MAX_LENGTH,
        help_text=_("Required when changing a form that was marked complete."),
        widget=TextInput(attrs={"autocomplete": "off"}),
    )
    layout: tuple = ()

    class Meta:
        formfield_callback = crf_formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.DateField):
                field.widget = DateInput()
                field.input_formats = ["%Y-%m-%d"]
        if self.instance.pk:
            self.fields["version"].initial = self.instance.version
        self.asks_reason = self.instance.needs_reason_for_change
        if not self.asks_reason:
            del self.fields["reason_for_change"]
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.field_template = FIELD_TEMPLATE  # fields the layout names by name alone
        # A field added to the dictionary and the model shows up even before a layout places it.
        self.helper.render_unmentioned_fields = True
        parts = [*self.layout, Field("form_status", wrapper_class="mt-3")]
        if self.asks_reason:
            parts.append(Div(Field("reason_for_change"), css_class="border border-warning rounded p-2 mt-2"))
        parts.append("version")
        self.helper.layout = Layout(*parts)

    def _post_clean(self):
        # Only put the cleaned values on the instance. The model's own checks (field types and
        # ranges, the check constraints) and the cross-form rules are the validation layer's, run by
        # the service on the record as it will be (validators.check, in Python): Django's
        # ModelForm would also run full_clean, asking the database once per check constraint.
        try:
            self.instance = forms.models.construct_instance(self, self.instance, self._meta.fields, self._meta.exclude)
        except ValidationError as error:
            self._update_errors(error)


class PatientForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = Patient
        fields = [*crf.file_of(Patient).fields, "form_status"]

    layout = (
        Fieldset(_("Enrolment"), Div(Field("enrolment_date"), Field("consent"), css_class="crf-grid")),
        Fieldset(_("Demographics"), Div(Field("sex"), Field("birth_year"), Field("smoking"), css_class="crf-grid")),
        Fieldset(
            _("Disease (Montreal classification)"),
            Div(
                Field("diagnosis_year"),
                Field("montreal_location"),
                Field("upper_gi"),
                Field("montreal_behaviour"),
                Field("perianal"),
                Field("prior_resection"),
                css_class="crf-grid",
            ),
        ),
    )


class PriorBiologicForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = PriorBiologic
        fields = [*crf.file_of(PriorBiologic).fields, "form_status"]

    layout = (
        Div(
            Field("agent"),
            Field("agent_other", wrapper_class="js-when-agent-other"),
            Field("start_date"),
            Field("stop_date"),
            Field("stop_reason"),
            css_class="crf-grid",
        ),
    )


class UstekinumabDoseForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = UstekinumabDose
        fields = [*crf.file_of(UstekinumabDose).fields, "form_status"]

    layout = (
        Div(
            Field("dose_date"),
            Field("phase"),
            Field("route"),
            Field("dose_mg"),
            Field("weight_kg"),
            css_class="crf-grid",
        ),
    )


class ReinductionForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = Reinduction
        fields = [*crf.file_of(Reinduction).fields, "form_status"]

    layout = (
        Fieldset(
            _("Loss of response"),
            Div(
                Field("initial_response"),
                Field("lor_date"),
                Field("lor_clinical"),
                Field("lor_biochemical"),
                Field("lor_endoscopic"),
                css_class="crf-grid",
            ),
        ),
        Fieldset(
            _("Treatment"),
            Div(
                Field("interval_before"),
                Field("interval_after"),
                Field("corticosteroids"),
                Field("immunomodulator"),
                css_class="crf-grid",
            ),
        ),
    )


class AssessmentForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = Assessment
        fields = [*crf.file_of(Assessment).fields, "form_status"]

    layout = (
        Fieldset(
            _("Visit"),
            Div(
                Field("not_done", css_class="js-not-done"),
                Field("not_done_reason", wrapper_class="js-when-not-done"),
                Field("assessment_date"),
                css_class="crf-grid",
            ),
        ),
        Div(
            Fieldset(
                _("Harvey-Bradshaw Index"),
                Div(*[Field(name, css_class="js-hbi-part") for name in HBI_COMPONENTS], css_class="crf-grid"),
                Field("hbi", css_class="js-hbi-total"),
                HTML('<p class="small text-muted js-hbi-note"></p>'),
            ),
            Fieldset(_("Laboratory"), Div(Field("crp_mg_l"), Field("fcal_ug_g"), css_class="crf-grid")),
            Fieldset(
                _("Endoscopy and medication"),
                Div(
                    Field("endoscopy_done", css_class="js-endoscopy"),
                    Field("ses_cd", wrapper_class="js-when-endoscopy"),
                    Field("corticosteroids"),
                    css_class="crf-grid",
                ),
            ),
            css_class="js-measurements",
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What the page says once it has computed the total (in the request's language).
        self.fields["hbi"].widget.attrs["data-computed-text"] = _("Computed from the five components.")

    def _post_clean(self):
        super()._post_clean()
        self.instance.fill_hbi()  # the page computes it live too (static/js/crf.js)


class FollowUpForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = FollowUp
        fields = [*crf.file_of(FollowUp).fields, "form_status"]

    layout = (
        Div(
            Field("status", css_class="js-status"),
            Field("last_follow_up_date"),
            Field("discontinuation_date", wrapper_class="js-when-discontinued"),
            Field("discontinuation_reason", wrapper_class="js-when-discontinued"),
            Field("next_therapy"),
            Field("adverse_events_any"),
            css_class="crf-grid",
        ),
    )


class AdverseEventForm(CrfForm):
    class Meta(CrfForm.Meta):
        model = AdverseEvent
        fields = [*crf.file_of(AdverseEvent).fields, "form_status"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "maxlength": 500})}

    layout = (
        Div(Field("onset_date"), Field("category"), css_class="crf-grid"),
        Field("description"),
        Div(
            Field("serious"),
            Field("causality"),
            Field("outcome"),
            Field("led_to_discontinuation"),
            css_class="crf-grid",
        ),
    )


def form_class(form: crf.CaseForm) -> type[CrfForm]:
    """The browser form of a casebook form (one CrfForm subclass per model)."""
    return next(cls for cls in CrfForm.__subclasses__() if cls._meta.model is form.model)


# The form's layout in Python: what {% crispy form %} renders for a CrfForm (crispy-bootstrap5's
# whole_uni_form.html, layout/fieldset.html and layout/div.html around FIELD_TEMPLATE's fields, with
# its whitespace), without crispy's per-field template contexts and includes (about 40% of a form
# page). Anything else (errors of the whole form, a checkbox, file or fieldset widget, a layout object
# other than these) goes through crispy itself. tests/test_crf.py holds the two equal, byte for byte.
def _crispy_remove_spaces(html: str) -> str:
    from crispy_forms.templatetags.crispy_forms_utils import remove_spaces

    return remove_spaces(html)


class _NotPlain(Exception):
    """Something render_crf_form leaves to crispy."""


def _crispy_field(bound, classes: str) -> str:
    """crispy's {% crispy_field field 'class' classes %} (crispy_forms_field.CrispyFieldNode)."""
    widget = bound.field.widget
    if hasattr(widget, "widgets") or hasattr(widget, "widget"):
        raise _NotPlain
    class_name = type(widget).__name__.lower()
    css_class = widget.attrs.get("class", "")
    if css_class:
        if css_class.find(class_name) == -1:
            css_class += f" {class_name}"
    else:
        css_class = class_name
    for word in classes.split():
        if word not in css_class.split():
            css_class += " " + word
    widget.attrs["class"] = css_class
    return str(bound)


def _field_html(form, name: str, attrs: dict | None, wrapper_class: str | None) -> str:
    """crispy's render_field and FIELD_TEMPLATE (templates/cohort/includes/_field.html) for one field."""
    if name in form.rendered_fields:
        raise _NotPlain
    bound = form[name]
    widget = bound.field.widget
    if attrs:
        if hasattr(widget, "widgets") or attrs.get("type") == "hidden":
            raise _NotPlain
        widget.attrs.update(attrs)
    form.rendered_fields.add(name)
    if bound.is_hidden:
        return f"\n\n    {bound}\n\n"
    if bound.use_fieldset or isinstance(widget, (forms.CheckboxInput, forms.FileInput)):
        raise _NotPlain
    esc = _escape
    auto_id = bound.auto_id
    required = bound.field.required
    label, help_text = _translated(bound.label, form.language_now), _translated(bound.help_text, form.language_now)
    parts = [
        f'\n\n    <div id="div_{esc(auto_id)}" class="mb-3',
        f" {esc(wrapper_class)}" if wrapper_class else "",
        f" {esc(bound.css_classes())}" if bound.css_classes() else "",
        '">\n        ',
    ]
    if label:
        target = f'for="{esc(bound.id_for_label)}"' if bound.id_for_label else ""
        star = '<span class="asteriskField">*</span>' if required else ""
        parts.append(
            f'<label {target} class="form-label{" requiredField" if required else ""}">\n'
            f"                {esc(label)}{star}\n"
            "            </label>\n        "
        )
    parts.append("\n        ")
    select = isinstance(widget, forms.Select)
    errors = bound.errors
    if errors:
        parts.append(_crispy_field(bound, "form-select is-invalid" if select else "form-control is-invalid"))
        parts.append(f'\n            <div id="{esc(errors.field_id)}_error" class="invalid-feedback">\n            ')
        for number, error in enumerate(errors, 1):
            span = f'<span id="error_{number}_{esc(auto_id)}"><strong>{esc(error)}</strong></span>'
            parts.append(f"\n                {span}\n            ")
        parts.append("\n            </div>\n        ")
    else:
        parts.append(_crispy_field(bound, "form-select" if select else "form-control"))
    parts.append("\n        ")
    if help_text:
        helptext_id = f'id="{esc(auto_id)}_helptext" ' if auto_id else ""
        parts.append(f'<div {helptext_id}class="form-text">{help_text}</div>\n        ')
    parts.append("\n    </div>\n\n")
    return "".join(parts)


def _layout_html(form, item) -> str:
    if isinstance(item, str):
        return _field_html(form, item, None, None)
    kind = type(item)
    if kind is Field:
        return "".join(_field_html(form, name, item.attrs, item.wrapper_class) for name in item.fields)
    if kind is Layout:
        return "".join(_layout_html(form, part) for part in item.fields)
    if kind is Div and item.template == "%s/layout/div.html":
        fields = "".join(_layout_html(form, part) for part in item.fields)
        css_id = f'id="{_escape(item.css_id)}"' if item.css_id else ""
        css_class = f'class="{_escape(item.css_class)}"' if item.css_class else ""
        return f"<div {css_id} \n    {css_class} {item.flat_attrs}>\n        {fields}\n</div>\n"
    if kind is Fieldset and item.template == "%s/layout/fieldset.html":
        fields = "".join(_layout_html(form, part) for part in item.fields)
        legend = str(item.legend) if item.legend else ""
        if "{" in legend:
            raise _NotPlain  # crispy renders a legend as a template
        css_id = f'id="{_escape(item.css_id)}"' if item.css_id else ""
        css_class = f'class="{_escape(item.css_class)}"' if item.css_class else ""
        shown = f"<legend>{legend}</legend>" if legend else ""
        opening = f"<fieldset {css_id} \n    {css_class}\n    {item.flat_attrs}>"
        return f"{opening}\n    {shown}\n    {fields} \n</fieldset>\n"
    if kind is HTML and "{" not in str(item.html):
        return str(item.html)
    raise _NotPlain


def render_crf_form(form: CrfForm) -> SafeString | None:
    """What {% crispy form %} renders for this CRF form (its helper: no <form> tag, no csrf input, no
    inputs), or None where it is crispy's to render."""
    helper = form.helper
    if form.non_field_errors() or helper.inputs or str(form.media):
        return None
    form.rendered_fields = set()
    form.language_now = translation.get_language()
    try:
        html = _layout_html(form, helper.layout)
        for name in form.fields:  # render_unmentioned_fields
            if name not in form.rendered_fields:
                html += _field_html(form, name, None, None)
    except _NotPlain:
        return None
    # whole_uni_form.html: its display_form.html adds only whitespace around the layout, in a
    # specialspaceless (which strips it), after two newlines and before one.
    return SafeString("\n\n" + _crispy_remove_spaces(html.strip()) + "\n")
