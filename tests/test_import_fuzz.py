"""import_cohort never crashes on bad input (SPEC sections 8 and 9): a property-based test.

Each example takes the valid 31-patient cohort, corrupts it once (a cell, a line, the header, the
encoding or a whole file) and imports it through the command. Whatever the corruption, the import
either succeeds (the corruption happened to be valid) or exits with status 1, every error line is
`file:row: variable: message`, the lines include the corrupted cell's row (and its variable, where
the corruption is in one cell), and nothing was written.

IMPORT_FUZZ_EXAMPLES sets the number of examples (default 100, under a minute here); the examples are
derandomized, so the test cannot flake. `IMPORT_FUZZ_EXAMPLES=1000` is the acceptance run;
IMPORT_FUZZ_SEED=<n> draws other examples.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, note, seed, settings
from hypothesis import strategies as st

from cohort import dictionary
from tests.test_import import COHORT, audit_count, centres, counts, run_import  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("IMPORT_FUZZ_EXAMPLES", "100"))
# Another seed explores other corruptions (not derandomized then); CI keeps the fixed ones.
SEED = os.environ.get("IMPORT_FUZZ_SEED")
seeded = seed(int(SEED)) if SEED else (lambda test: test)
ERROR_LINE = re.compile(r"^(?P<file>[a-z_]+\.csv):(?P<row>\d+): (?P<variable>[A-Za-z0-9_]+): (?P<message>\S.*)$")

FILES = {path.name: path.read_bytes() for path in sorted(COHORT.glob("*.csv"))}
TABLES = {name: list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) for name, data in FILES.items()}
TYPES = {(f"{v.form}.csv", v.name): v for v in dictionary.variables()}
STUDY_IDS = {row[0] for row in TABLES["patients.csv"][1:]}
CENTRES = {"AMC", "UMCU", "RUMC"}

# Characters no cell may hold: C0 controls but tab, DEL and the C1 controls; the invalid bytes are
# lone surrogates (how `surrogateescape` decodes a byte that is not UTF-8).
CONTROL = [chr(c) for c in [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)]]
BAD_BYTES = [chr(0xDC00 + b) for b in range(0x80, 0x100)]
NOT_INTEGER = ["abc", "1.5", "1,5", "12 mg", "NaN", "--1", "\u0661\u0662", "1e3", "0x1F", "9" * 40, "-", "+"]
NOT_DECIMAL = ["abc", "1,5", "NaN", "Infinity", "-inf", "1e400", "\u0663.\u0665", "1.2.3", "12 mg", ".", "-", "1e-400"]
NOT_DATE = [
    "2021-02-30",
    "2021-13-01",
    "0000-01-01",
    "31-12-2021",
    "2021/01/01",
    "20210101",
    "2021-1-1",
    "yesterday",
    "\u0662\u0660\u0662\u0661-\u0660\u0661-\u0660\u0661",
    "2021-01-01T00:00",
    "99999-01-01",
]


@dataclass
class Corruption:
    """What was done, the files after it, and where the import must report it: `cell` (that row and
    variable), `row` (that row), `valid` (the import must succeed) or `any` (no place promised)."""

    what: str
    files: dict[str, bytes] = field(repr=False)
    expect: str
    file: str = ""
    row: int = 0
    variable: str = ""


def render(rows: list[list[str]]) -> bytes:
    """CSV as export writes it, but quoting a carriage return too (csv.writer leaves it bare, which
    would make it a line break rather than a character in its cell)."""

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value

    return "".join(",".join(map(cell, row)) + "\n" for row in rows).encode("utf-8", "surrogateescape")


def with_file(name: str, data: bytes) -> dict[str, bytes]:
    return {**FILES, name: data}


def insert(text: str, piece: str, position: int) -> str:
    position %= len(text) + 1
    return text[:position] + piece + text[position:]


@st.composite
def cell_corruptions(draw) -> Corruption:
    name = draw(st.sampled_from(sorted(FILES)))
    table = TABLES[name]
    line = draw(st.integers(2, len(table)))
    column = draw(st.integers(0, len(table[0]) - 1))
    variable = TABLES[name][0][column]
    original = table[line - 1][column]
    kind = dictionary_type = TYPES[(name, variable)].type
    how = draw(st.sampled_from(["control", "byte", "huge", "wrong", "random", "empty"]))
    at_cell = True
    if how == "control":
        value = insert(original, draw(st.sampled_from(CONTROL)), draw(st.integers(0, 50)))
    elif how == "byte":
        value = insert(original, draw(st.sampled_from(BAD_BYTES)), draw(st.integers(0, 50)))
    elif how == "huge":
        value = draw(st.sampled_from('x9é,"')) * draw(st.sampled_from([1001, 4999, 131073, 300001]))
    elif how == "wrong" and kind == "integer":
        value = draw(st.sampled_from(NOT_INTEGER))
    elif how == "wrong" and kind == "decimal":
        value = draw(st.sampled_from(NOT_DECIMAL))
    elif how == "wrong" and kind == "date":
        value = draw(st.sampled_from(NOT_DATE))
    elif how == "wrong" and kind in ("choice", "yesno", "centre_code"):
        codes = {*TYPES[(name, variable)].codes, *CENTRES}
        value = draw(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() not in codes))
    elif how == "wrong" and variable == "study_id" and name != "patients.csv":
        value = draw(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and s.strip() not in STUDY_IDS))
    elif how == "empty":
        value, at_cell = "", False
    else:  # random text: perhaps valid, perhaps not, perhaps breaking a rule of another row
        how, value, at_cell = "random", draw(st.text(max_size=40)), False
    rows = [list(row) for row in table]
    rows[line - 1][column] = value
    note(f"{name}:{line}: {variable} ({dictionary_type}) {how}: {original!r} -> {value[:80]!r}")
    return Corruption(f"cell {how}", with_file(name, render(rows)), "cell" if at_cell else "any", name, line, variable)


@st.composite
def line_corruptions(draw) -> Corruption:
    name = draw(st.sampled_from(sorted(FILES)))
    table = TABLES[name]
    lines = FILES[name].split(b"\n")[:-1]  # the files end with a newline
    line = draw(st.integers(2, len(table)))
    how = draw(st.sampled_from(["short", "long", "duplicate", "latin1", "bytes"]))
    note(f"{name}:{line} {how}")
    if how in ("short", "long"):
        rows = [list(row) for row in table]
        if how == "short":
            rows[line - 1] = rows[line - 1][: draw(st.integers(1, len(table[0]) - 1))]
        else:
            rows[line - 1] += draw(st.lists(st.text(max_size=10), min_size=1, max_size=3))
        return Corruption(f"row {how}", with_file(name, render(rows)), "row", name, line)
    if how == "duplicate":
        lines.insert(line - 1, lines[line - 1])
        return Corruption("line duplicated", with_file(name, b"\n".join(lines) + b"\n"), "any", name, line)
    if how == "latin1":
        position = draw(st.integers(0, len(lines[line - 1])))
        byte = bytes([draw(st.integers(0x80, 0xFF))])
        # The cell it falls in: the number of cells before it (the cohort has no quoted line breaks).
        before = next(csv.reader([lines[line - 1][:position].decode("utf-8", "surrogateescape")]), [])
        variable = table[0][max(len(before) - 1, 0)]
        lines[line - 1] = lines[line - 1][:position] + byte + lines[line - 1][position:]
        files = with_file(name, b"\n".join(lines) + b"\n")
        return Corruption("latin-1 byte", files, "cell", name, line, variable)
    position = draw(st.integers(0, len(lines[line - 1])))
    junk = draw(st.binary(min_size=1, max_size=20))
    lines[line - 1] = lines[line - 1][:position] + junk + lines[line - 1][position:]
    return Corruption("random bytes", with_file(name, b"\n".join(lines) + b"\n"), "any", name, line)


@st.composite
def file_corruptions(draw) -> Corruption:
    name = draw(st.sampled_from(sorted(FILES)))
    header = list(TABLES[name][0])
    how = draw(st.sampled_from(["rename", "duplicate", "empty", "binary", "truncate", "bom", "crlf", "blank"]))
    note(f"{name} {how}")
    if how == "rename":
        column = draw(st.integers(0, len(header) - 1))
        original = header[column]
        header[column] = draw(st.text(max_size=20).filter(lambda s: s.strip() != original))
        return Corruption("header renamed", with_file(name, render([header, *TABLES[name][1:]])), "row", name, 1)
    if how == "duplicate":
        i, j = draw(st.lists(st.integers(0, len(header) - 1), min_size=2, max_size=2, unique=True))
        header[j] = header[i]
        return Corruption("header duplicated", with_file(name, render([header, *TABLES[name][1:]])), "row", name, 1)
    if how == "empty":
        return Corruption("empty file", with_file(name, b""), "row", name, 1)
    if how == "binary":
        return Corruption("binary file", with_file(name, draw(st.binary(min_size=1, max_size=2000))), "row", name, 1)
    if how == "truncate":
        data = FILES[name]
        return Corruption("truncated", with_file(name, data[: draw(st.integers(1, len(data) - 1))]), "any")
    if how == "bom":
        return Corruption("BOM", with_file(name, b"\xef\xbb\xbf" + FILES[name]), "valid")
    if how == "crlf":
        return Corruption("CRLF", with_file(name, FILES[name].replace(b"\n", b"\r\n")), "valid")
    return Corruption("blank lines", with_file(name, FILES[name].replace(b"\n", b"\n\n")), "valid")


corruptions = st.one_of(cell_corruptions(), cell_corruptions(), line_corruptions(), file_corruptions())


def check_import(corruption: Corruption) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, data in corruption.files.items():
            (Path(directory) / name).write_bytes(data)
        with transaction.atomic():
            out, err, code = run_import(Path(directory))
            written = set(counts().values()) != {0} or audit_count() != 0
            transaction.set_rollback(True)  # an import that succeeded is undone for the next example
    note(err[:3000])
    event(f"{corruption.what}: exit status {code}")
    if code == 0:
        assert corruption.expect in ("valid", "any"), f"{corruption.what} was imported without an error"
        return
    assert code == 1
    assert corruption.expect != "valid", err
    assert not written
    lines = err.splitlines()
    assert lines[-1].endswith("nothing was imported."), lines[-1]
    errors = lines[:-1]
    assert errors, err
    for line in errors:
        assert ERROR_LINE.match(line), line
    located = [ERROR_LINE.match(line) for line in errors]
    if corruption.expect == "row":
        assert any(m["file"] == corruption.file and int(m["row"]) == corruption.row for m in located), (
            f"{corruption.what}: no error at {corruption.file}:{corruption.row}"
        )
    if corruption.expect == "cell":
        assert any(
            m["file"] == corruption.file and int(m["row"]) == corruption.row and m["variable"] == corruption.variable
            for m in located
        ), f"{corruption.what}: no error at {corruption.file}:{corruption.row}: {corruption.variable}"


@seeded
@settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.usefixtures("centres")
@given(corruption=corruptions)
def test_no_corruption_of_a_valid_cohort_crashes_the_import_or_is_reported_away_from_its_cell(corruption):
    check_import(corruption)


def test_the_corruptions_start_from_the_cohort_as_it_is():
    """Unchanged, the tables render back to the very bytes of the valid cohort."""
    assert {name: render(table) for name, table in TABLES.items()} == FILES
