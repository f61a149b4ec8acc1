"""The one check of uploaded import files, for the import page (reports/import_views.py) and the
API's import (cohort/api.py): CSV files of the import format, or zips of them, become the form
files' bytes by name, or problems that name the file, and nothing is written anywhere meanwhile.

Refused: names that are not form files (in a zip, other members are passed over, but it must hold
one), paths in a zip that climb out of it or are absolute, a zip unpacking to more than
MAX_UNZIPPED_BYTES (measured as it is read, never trusted from its directory: a zip bomb), a file
over MAX_FILE_BYTES, text that is not UTF-8.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _

from cohort import crf

MAX_FILE_BYTES = 100 * 2**20  # one uploaded file, zip or CSV
MAX_UNZIPPED_BYTES = 500 * 2**20  # a zip's form files, unpacked
FORM_FILES = tuple(f"{form}.csv" for form in crf.FILES)


@dataclass(frozen=True)
class Problem:
    """What is wrong with an upload: the file it is about ("" for the upload as a whole), the
    message in the user's language (naming the file), and the line for text that is not UTF-8."""

    file: str
    message: str
    row: int = 0

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, object]:
        """As the API answers import errors: {file, row, variable, message}."""
        return {"file": self.file, "row": self.row, "variable": "", "message": self.message}


def unpack(uploads: list[UploadedFile]) -> tuple[dict[str, bytes], list[Problem]]:
    """The form files' bytes by name, from CSV files or zips of them, and what is wrong with the
    upload (see the module's docstring); with any problem, use none of the files."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    for upload in uploads:
        name = PurePosixPath((upload.name or "").replace("\\", "/")).name
        if upload.size is not None and upload.size > MAX_FILE_BYTES:
            problems.append(
                Problem(
                    name, _("%(name)s is larger than %(size)d MB.") % {"name": name, "size": MAX_FILE_BYTES // 2**20}
                )
            )
        elif name.lower().endswith(".zip"):
            problems.extend(_unzip(upload, name, files))
        elif name in FORM_FILES:
            files[name] = b"".join(upload.chunks())
        else:
            problems.append(
                Problem(
                    name,
                    _("%(name)s is not a form file: upload %(expected)s, or a zip of them.")
                    % {"name": name, "expected": ", ".join(FORM_FILES)},
                )
            )
    for name, content in files.items():
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as error:
            line = content[: error.start].count(b"\n") + 1
            message = _("%(name)s is not UTF-8 text (line %(line)d); save it as UTF-8 (CSV UTF-8) and upload it again.")
            problems.append(Problem(name, message % {"name": name, "line": line}, line))
    if not files and not problems:
        problems.append(Problem("", _("Choose the form files (e.g. patients.csv) or a zip of them.")))
    return files, problems


def _unzip(upload: UploadedFile, name: str, files: dict[str, bytes]) -> list[Problem]:
    try:
        with zipfile.ZipFile(upload) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            for member in members:
                path = PurePosixPath(member.filename.replace("\\", "/"))
                if path.is_absolute() or ".." in path.parts:
                    message = _("%(name)s: %(member)s points outside the zip.")
                    return [Problem(name, message % {"name": name, "member": member.filename})]
            wanted = [m for m in members if PurePosixPath(m.filename).name in FORM_FILES]
            if not wanted:
                return [Problem(name, _("%(name)s holds no form files (e.g. patients.csv).") % {"name": name})]
            budget = MAX_UNZIPPED_BYTES
            for member in wanted:
                with archive.open(member) as fh:  # read at most the budget left, whatever the zip claims
                    content = fh.read(budget + 1)
                budget -= len(content)
                if budget < 0:
                    message = _("%(name)s unpacks to more than %(size)d MB.")
                    return [Problem(name, message % {"name": name, "size": MAX_UNZIPPED_BYTES // 2**20})]
                files[PurePosixPath(member.filename).name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError):
        return [Problem(name, _("%(name)s is not a readable zip file.") % {"name": name})]
    return []
