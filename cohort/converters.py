"""URL path converters: a study ID, and the casebook form keys of the CRF registry (so the URLs
accept exactly the registry's forms, and nothing lists them again)."""

from __future__ import annotations

from django.urls import register_converter

from cohort import crf
from cohort.models import STUDY_ID_PATTERN


class StudyIdConverter:
    regex = STUDY_ID_PATTERN.removeprefix("^").removesuffix("$")

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class SingleFormConverter(StudyIdConverter):
    """The key of a form with one row per patient (or per visit)."""

    regex = crf.key_pattern(repeating=False)


class RepeatingFormConverter(StudyIdConverter):
    """The key of a repeating form."""

    regex = crf.key_pattern(repeating=True)


register_converter(StudyIdConverter, "study_id")
register_converter(SingleFormConverter, "single_form")
register_converter(RepeatingFormConverter, "repeating_form")
