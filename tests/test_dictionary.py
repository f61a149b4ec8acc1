"""The models say what the data dictionary says: variable names, labels, codes and what is required."""

from __future__ import annotations

from pathlib import Path

import pytest

from cohort import crf, dictionary

SHARED = Path(__file__).resolve().parents[2] / "shared" / "crf" / "data_dictionary.csv"


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ is not beside this checkout")
def test_the_bundled_dictionary_is_the_shared_one():
    assert dictionary.PATH.read_bytes() == SHARED.read_bytes()


@pytest.mark.parametrize("variable", dictionary.variables(), ids=lambda v: f"{v.form}.{v.name}")
def test_each_variable_is_a_model_field_with_its_label_and_codes(variable):
    model = crf.FILES[variable.form].model
    if variable.name == "study_id" and variable.form != "patients":
        field = model._meta.get_field("patient")
        assert field.verbose_name == "Study ID"
        return
    field = model._meta.get_field(variable.name)
    assert field.verbose_name == variable.label
    if variable.type in ("choice", "yesno"):
        assert tuple(code for code, _ in field.choices) == variable.codes
        if variable.type == "choice":
            assert [str(label) for _, label in field.choices] == [label for _, label in variable.choices]
    # Required in the dictionary means the model refuses it blank (conditional requirements are rules).
    assert field.blank is not variable.required
