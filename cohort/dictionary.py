"""The data dictionary (a copy of shared/crf/data_dictionary.csv, kept equal by a test).

It is the contract of the import/export format: forms, variable names in their order, types and
choice codes. Model fields carry the same names, labels and codes (also checked by a test)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PATH = Path(__file__).with_name("data_dictionary.csv")


@dataclass(frozen=True)
class Variable:
    form: str
    name: str
    label: str
    type: str
    choices: tuple[tuple[str, str], ...]
    min: str
    max: str
    required: bool
    notes: str

    @property
    def codes(self) -> tuple[str, ...]:
        if self.type == "yesno":
            return ("yes", "no")
        return tuple(code for code, _ in self.choices)


@cache
def variables() -> tuple[Variable, ...]:
    with PATH.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return tuple(
        Variable(
            form=row["form"],
            name=row["variable"],
            label=row["label"],
            type=row["type"],
            choices=tuple(
                tuple(item.split("=", 1))
                for item in row["choices"].split("|")
                if item  # type: ignore[misc]
            ),
            min=row["min"],
            max=row["max"],
            required=row["required"] == "yes",
            notes=row["notes"],
        )
        for row in rows
    )


@cache
def forms() -> dict[str, tuple[Variable, ...]]:
    """Form name -> its variables in dictionary order (the column order of the CSV files)."""
    result: dict[str, list[Variable]] = {}
    for variable in variables():
        result.setdefault(variable.form, []).append(variable)
    return {form: tuple(items) for form, items in result.items()}
