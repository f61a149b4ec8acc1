"""CDISC ODM 1.3.2 (SPEC section 11): the study as one XML file, and that file read back.

Metadata: generated from the data dictionary and the case report form's registry (cohort/crf.py):
a StudyEventDef per column of the casebook (baseline, the four assessment visits, follow-up), a
FormDef and an ItemGroupDef per dictionary form (repeating forms: a repeating item group), an
ItemDef per variable with its type, length, range and code list, the labels in English and Dutch
(the model fields' verbose names and choices, translated by the project's catalogue).

Clinical data: one SubjectData per patient with the values of the import format (the same cell
texts as `export_cohort`, from cohort/csvformat.py), the keys study_id, centre and visit being
the SubjectKey, the SiteRef and the StudyEvent. ODM allows one AuditRecord per element: each item
group carries its row's last event (who, when, why, through what) and each item the last change of
its value when that is an earlier event (an item without one was last set by its group's event);
the whole trail is the audit CSV export.

Written as it is read, chunk by chunk of patients (lxml builds one subject at a time): the clinical
data goes to a temporary file first, since AdminData (the users and sites the audit records name)
comes before it in the file and is only known at the end. Read back with lxml's iterparse, one
subject at a time, into the CSV import's rows (cohort/importer.py does the rest).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from xml.sax.saxutils import quoteattr

from django.db.models import QuerySet
from django.utils import timezone, translation
from lxml import etree

from cohort import audit, casebook, crf, csvformat, dictionary
from cohort.csvformat import SourceRow, shown
from cohort.models import Centre

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
LANGUAGES = ("en", "nl")
STUDY_OID = "ST.USTEKINUMAB-REINDUCTION"
METADATA_OID = "MDV.1"
STUDY_NAME = "Ustekinumab re-induction cohort"
# Patients per chunk: their rows and their audit trail's last changes in memory at a time.
CHUNK = 1000
# An event of the audit trail as an AuditRecord shows it: when, user id, username, reason, source.
Stamp = tuple[str, int | None, str | None, str, str]
ODM_TYPES = {
    "text": "text",
    "integer": "integer",
    "decimal": "float",
    "date": "date",
    "yesno": "text",
    "choice": "text",
}
# The casebook's forms whose variables are keys, not items: the SubjectKey, SiteRef and StudyEvent.
KEYS = frozenset(crf.KEY_VARIABLES)


def event_oid(column: str) -> str:
    return f"SE.{column.upper()}"


def form_oid(form: str) -> str:
    return f"F.{form.upper()}"


def group_oid(form: str) -> str:
    return f"IG.{form.upper()}"


def item_oid(variable: dictionary.Variable) -> str:
    return f"IT.{variable.form.upper()}.{variable.name.upper()}"


def codelist_oid(variable: dictionary.Variable) -> str:
    return "CL.YESNO" if variable.type == "yesno" else f"CL.{variable.form.upper()}.{variable.name.upper()}"


def location_oid(code: str) -> str:
    return f"LOC.{code}"


def user_oid(user_id: int | None) -> str:
    return f"USR.{user_id}" if user_id else "USR.SYSTEM"


@cache
def events() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(casebook column, its dictionary forms) in casebook order: the study events."""
    return tuple(
        (column, tuple(dict.fromkeys(form.name for form in crf.FORMS if form.column == column)))
        for column, _label in casebook.COLUMNS
    )


def items(form: str) -> tuple[dictionary.Variable, ...]:
    """The form's variables that are items (the keys left out), in the dictionary's order."""
    return tuple(v for v in crf.FILES[form].variables if v.name not in KEYS)


def _field(variable: dictionary.Variable):
    return crf.FILES[variable.form].model._meta.get_field(variable.name)


def _translated(parent: etree._Element, tag: str, text) -> etree._Element:
    """`tag` with a TranslatedText per language: the catalogue's translation of a lazy string."""
    element = etree.SubElement(parent, tag)
    for language in LANGUAGES:
        with translation.override(language):
            etree.SubElement(element, "TranslatedText", {XML_LANG: language}).text = str(text)
    return element


# ---------------------------------------------------------------------------------------------
# Metadata


def study_element() -> etree._Element:
    study = etree.Element("Study", OID=STUDY_OID)
    glob = etree.SubElement(study, "GlobalVariables")
    etree.SubElement(glob, "StudyName").text = STUDY_NAME
    etree.SubElement(
        glob, "StudyDescription"
    ).text = "Multi-centre observational cohort of Crohn's disease patients re-induced with intravenous ustekinumab."
    etree.SubElement(glob, "ProtocolName").text = STUDY_NAME
    version = etree.SubElement(study, "MetaDataVersion", OID=METADATA_OID, Name="Data dictionary")
    protocol = etree.SubElement(version, "Protocol")
    for number, (column, _forms) in enumerate(events(), 1):
        etree.SubElement(
            protocol, "StudyEventRef", StudyEventOID=event_oid(column), OrderNumber=str(number), Mandatory="No"
        )
    labels = dict(casebook.COLUMNS)
    for column, forms in events():
        with translation.override("en"):
            name = str(labels[column])
        event = etree.SubElement(
            version, "StudyEventDef", OID=event_oid(column), Name=name, Repeating="No", Type="Scheduled"
        )
        _translated(event, "Description", labels[column])
        for number, form in enumerate(forms, 1):
            etree.SubElement(event, "FormRef", FormOID=form_oid(form), OrderNumber=str(number), Mandatory="No")
    for name, form in crf.FILES.items():
        definition = etree.SubElement(version, "FormDef", OID=form_oid(name), Name=name, Repeating="No")
        _translated(definition, "Description", form.label)
        etree.SubElement(definition, "ItemGroupRef", ItemGroupOID=group_oid(name), Mandatory="Yes")
    for name, form in crf.FILES.items():
        group = etree.SubElement(
            version, "ItemGroupDef", OID=group_oid(name), Name=name, Repeating="Yes" if form.repeating else "No"
        )
        for number, variable in enumerate(items(name), 1):
            etree.SubElement(
                group,
                "ItemRef",
                ItemOID=item_oid(variable),
                OrderNumber=str(number),
                Mandatory="Yes" if variable.required else "No",
            )
    for name in crf.FILES:
        for variable in items(name):
            version.append(_item_def(variable))
    written = set()
    for name in crf.FILES:
        for variable in items(name):
            if variable.type in ("yesno", "choice") and codelist_oid(variable) not in written:
                written.add(codelist_oid(variable))
                version.append(_code_list(variable))
    return study


def _item_def(variable: dictionary.Variable) -> etree._Element:
    field = _field(variable)
    attributes = {"OID": item_oid(variable), "Name": variable.name, "DataType": ODM_TYPES[variable.type]}
    if variable.type in ("text", "choice", "yesno") and field.max_length:
        attributes["Length"] = str(field.max_length)
    elif variable.type == "decimal":
        attributes["Length"] = str(field.max_digits)
        attributes["SignificantDigits"] = str(field.decimal_places)
    if variable.notes:
        attributes["Comment"] = variable.notes
    element = etree.Element("ItemDef", attributes)
    _translated(element, "Question", field.verbose_name)
    # The dictionary's min and max; "today" and "this_year" are not fixed values and have no RangeCheck.
    for comparator, bound in (("GE", variable.min), ("LE", variable.max)):
        if bound and bound not in ("today", "this_year"):
            check = etree.SubElement(element, "RangeCheck", Comparator=comparator, SoftHard="Hard")
            etree.SubElement(check, "CheckValue").text = bound
    if variable.type in ("yesno", "choice"):
        etree.SubElement(element, "CodeListRef", CodeListOID=codelist_oid(variable))
    return element


def _code_list(variable: dictionary.Variable) -> etree._Element:
    name = "yesno" if variable.type == "yesno" else variable.name
    element = etree.Element("CodeList", OID=codelist_oid(variable), Name=name, DataType="text")
    labels = dict(_field(variable).flatchoices)
    for number, code in enumerate(variable.codes, 1):
        item = etree.SubElement(element, "CodeListItem", CodedValue=code, OrderNumber=str(number))
        _translated(item, "Decode", labels[code])
    return element


def admin_element(users: dict[str, str], centres: dict[str, str], effective: dt.date) -> etree._Element:
    """The users the audit records name (OID -> login) and the sites (code -> name)."""
    admin = etree.Element("AdminData", StudyOID=STUDY_OID)
    for oid, login in sorted(users.items()):
        user = etree.SubElement(admin, "User", OID=oid)
        etree.SubElement(user, "LoginName").text = login
    for code, name in sorted(centres.items()):
        location = etree.SubElement(admin, "Location", OID=location_oid(code), Name=name, LocationType="Site")
        etree.SubElement(
            location,
            "MetaDataVersionRef",
            StudyOID=STUDY_OID,
            MetaDataVersionOID=METADATA_OID,
            EffectiveDate=effective.isoformat(),
        )
    return admin


# ---------------------------------------------------------------------------------------------
# Clinical data


def _stamps(patient_keys: list[int]) -> tuple[dict, dict]:
    """The last event of each form row (model, record) and the last change of each of its fields
    (model, record, field), from the audit trail of these patients."""
    rows: dict[tuple[str, str], Stamp] = {}
    fields: dict[tuple[str, str, str], Stamp] = {}
    for entry in audit.iter_entries(patient_keys, tracked=crf.MODELS):
        stamp = (entry["at"].isoformat(), entry["user_id"], entry["user"], entry["reason"] or "", entry["source"] or "")
        rows[entry["model"], entry["record"]] = stamp
        for name in entry["changes"]:
            fields[entry["model"], entry["record"], name] = stamp
    return rows, fields


def _audit_record(parent: etree._Element, stamp: Stamp, centre: str, users: dict[str, str]) -> None:
    at, user_id, username, reason, source = stamp
    oid = user_oid(user_id)
    users.setdefault(oid, username or "system")
    record = etree.SubElement(parent, "AuditRecord")
    etree.SubElement(record, "UserRef", UserOID=oid)
    etree.SubElement(record, "LocationRef", LocationOID=location_oid(centre))
    etree.SubElement(record, "DateTimeStamp").text = at
    if reason:
        etree.SubElement(record, "ReasonForChange").text = reason
    if source:
        etree.SubElement(record, "SourceID").text = source


def _by_study_id(records: list[tuple[int, list[str]]]) -> dict[str, list[tuple[int, list[str]]]]:
    """A chunk's sorted rows of one form (id, cells) by study ID (the first cell), in order."""
    grouped: dict[str, list[tuple[int, list[str]]]] = {}
    for record in records:
        grouped.setdefault(record[1][0], []).append(record)
    return grouped


def _subjects(patients: QuerySet, users: dict[str, str], centres: set[str]) -> Iterator[etree._Element]:
    for chunk in csvformat.patient_chunks(patients, CHUNK):
        rows = {name: _by_study_id(csvformat.chunk_records(name, chunk)) for name in crf.FILES}
        stamps = _stamps(chunk)
        for study_id, [(_record, cells)] in rows["patients"].items():
            centres.add(cells[1])
            yield _subject(study_id, cells[1], rows, stamps, users)


def _subject(
    study_id: str, centre: str, rows: dict, stamps: tuple[dict, dict], users: dict[str, str]
) -> etree._Element:
    row_stamps, field_stamps = stamps
    subject = etree.Element("SubjectData", SubjectKey=study_id)
    etree.SubElement(subject, "SiteRef", LocationOID=location_oid(centre))
    for column, forms in events():
        event = None
        for form in forms:
            spec = crf.FILES[form]
            form_rows = rows[form].get(study_id, [])
            if spec.visit is not None:  # the assessments: this visit's row
                visit = [v.name for v in spec.variables].index("visit")
                form_rows = [(record, cells) for record, cells in form_rows if cells[visit] == column]
            if not form_rows:
                continue
            if event is None:
                event = etree.SubElement(subject, "StudyEventData", StudyEventOID=event_oid(column))
            data = etree.SubElement(event, "FormData", FormOID=form_oid(form))
            model = spec.model.__name__
            for number, (record, cells) in enumerate(form_rows, 1):
                group = etree.SubElement(data, "ItemGroupData", ItemGroupOID=group_oid(form))
                if spec.repeating:
                    group.set("ItemGroupRepeatKey", str(number))
                row_stamp = row_stamps.get((model, str(record)))
                if row_stamp:
                    _audit_record(group, row_stamp, centre, users)
                for index, variable, oid in _item_columns(form):
                    if cells[index] == "":
                        continue  # missing: no ItemData (a snapshot)
                    item = etree.SubElement(group, "ItemData", ItemOID=oid, Value=cells[index])
                    # An item last set by the row's last event has it in its group's AuditRecord.
                    stamp = field_stamps.get((model, str(record), variable.name))
                    if stamp and stamp is not row_stamp:
                        _audit_record(item, stamp, centre, users)
    return subject


@cache
def _item_columns(form: str) -> tuple[tuple[int, dictionary.Variable, str], ...]:
    """(position in the form's cells, variable, its OID) of the form's items."""
    return tuple((index, v, item_oid(v)) for index, v in enumerate(crf.FILES[form].variables) if v.name not in KEYS)


def _start_tag(tag: str, attributes: dict[str, str]) -> bytes:
    return ("<" + tag + "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items()) + ">").encode()


def write_odm(out: Path, patients: QuerySet, progress: Callable[[int, str], None] = lambda p, m: None) -> int:
    """Write the ODM snapshot of these patients to `out`; returns the number of subjects."""
    now = timezone.now().astimezone(dt.UTC).replace(microsecond=0)
    users: dict[str, str] = {}
    centres: set[str] = set()
    count = 0
    total = max(1, patients.count())
    with tempfile.TemporaryFile(dir=Path(out).parent) as clinical:
        progress(5, "Writing the clinical data")
        for subject in _subjects(patients, users, centres):
            # One element a line: an import error names the line of its element.
            clinical.write(etree.tostring(subject, encoding="utf-8", pretty_print=True))
            count += 1
            if count % CHUNK == 0:
                progress(5 + 85 * count // total, "Writing the clinical data")
        progress(90, "Writing the metadata")
        names = dict(Centre.objects.filter(code__in=centres).values_list("code", "name"))
        with Path(out).open("wb") as fh:
            fh.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
            attributes = {
                "xmlns": NS,
                "FileType": "Snapshot",
                "FileOID": f"FILE.{uuid.uuid4()}",
                "CreationDateTime": now.isoformat(),
                "ODMVersion": "1.3.2",
                "Originator": "eCRF",
                "SourceSystem": "Ustekinumab re-induction eCRF",
                "Granularity": "All",
            }
            fh.write(_start_tag("ODM", attributes) + b"\n")
            fh.write(etree.tostring(study_element(), encoding="utf-8", pretty_print=True))
            fh.write(etree.tostring(admin_element(users, names, now.date()), encoding="utf-8", pretty_print=True))
            fh.write(_start_tag("ClinicalData", {"StudyOID": STUDY_OID, "MetaDataVersionOID": METADATA_OID}) + b"\n")
            clinical.seek(0)
            shutil.copyfileobj(clinical, fh)
            fh.write(b"</ClinicalData>\n</ODM>\n")
    return count


# ---------------------------------------------------------------------------------------------
# Reading


def _oids() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, dictionary.Variable]]]:
    """Item group OID -> form, study event OID -> casebook column, per form item OID -> variable."""
    groups = {group_oid(name): name for name in crf.FILES}
    item_map = {name: {item_oid(v): v for v in items(name)} for name in crf.FILES}
    return groups, {event_oid(column): column for column, _ in events()}, item_map


def read_file(path: Path, errors: list[str], unread: set[str]) -> dict[str, list[SourceRow]]:
    """The rows of every form in an ODM file of our export, as the CSV reader gives them: each
    problem is reported as `file.xml:line: variable: message` at the element's line."""
    name = path.name
    sources: dict[str, list[SourceRow]] = {form: [] for form in crf.FILES}
    groups, event_columns, item_map = _oids()
    forms_of_event = dict(events())
    try:
        parser = etree.iterparse(
            str(path),
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            remove_comments=True,
        )
        first = True
        for action, element in parser:
            if first:
                first = False
                if element.tag != f"{{{NS}}}ODM":
                    errors.append(
                        f"{name}:{element.sourceline}: file: not a CDISC ODM 1.3 file "
                        f"(its root element is {shown(element.tag)})."
                    )
                    return sources
            if action == "end" and element.tag == f"{{{NS}}}SubjectData":
                _read_subject(element, name, sources, errors, unread, groups, event_columns, item_map, forms_of_event)
                element.clear()
                while element.getprevious() is not None:
                    del element.getparent()[0]
    except etree.XMLSyntaxError as error:
        errors.append(
            f"{name}:{error.lineno or 1}: file: not well-formed XML ({error.msg}); nothing was read after it."
        )
    except OSError as error:
        errors.append(f"{name}:1: file: cannot be read ({error}).")
    return sources


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _read_subject(subject, name, sources, errors, unread, groups, event_columns, item_map, forms_of_event) -> None:
    study_id = subject.get("SubjectKey", "")
    site = subject.find(_q("SiteRef"))
    location = site.get("LocationOID", "") if site is not None else ""
    centre = location.removeprefix("LOC.")

    def fail(line: int, variable: str, message: str) -> None:
        errors.append(f"{name}:{line}: {variable}: {message}")
        unread.add(study_id)

    for event in subject.iterfind(_q("StudyEventData")):
        column = event_columns.get(event.get("StudyEventOID", ""))
        if column is None:
            fail(event.sourceline, "StudyEventOID", f"unknown study event '{shown(event.get('StudyEventOID', ''))}'.")
            continue
        for data in event.iterfind(_q("FormData")):
            for group in data.iterfind(_q("ItemGroupData")):
                form = groups.get(group.get("ItemGroupOID", ""))
                if form is None or form not in forms_of_event[column] or data.get("FormOID") != form_oid(form):
                    what = group.get("ItemGroupOID", "")
                    fail(
                        group.sourceline,
                        "ItemGroupOID",
                        f"'{shown(what)}' is not a form of study event {event_oid(column)}.",
                    )
                    continue
                cells = {"study_id": study_id}
                if form == "patients":
                    cells["centre"] = centre
                if crf.FILES[form].visit is not None:
                    cells["visit"] = column
                lines = {}
                bad = False
                for item in group.iterfind(_q("ItemData")):
                    variable = item_map[form].get(item.get("ItemOID", ""))
                    if variable is None:
                        fail(
                            item.sourceline,
                            "ItemOID",
                            f"'{shown(item.get('ItemOID', ''))}' is not an item of {group_oid(form)}.",
                        )
                        bad = True
                        continue
                    if variable.name in lines:
                        fail(item.sourceline, variable.name, f"given twice (also on line {lines[variable.name]}).")
                        bad = True
                        continue
                    cells[variable.name] = "" if item.get("IsNull") == "Yes" else item.get("Value", "")
                    lines[variable.name] = item.sourceline
                if bad:
                    continue
                ordered = [(v.name, cells.get(v.name, "")) for v in crf.FILES[form].variables]
                source = csvformat.source_row(form, name, group.sourceline, ordered, errors, lines=lines, file=name)
                if source is not None:
                    sources[form].append(source)
