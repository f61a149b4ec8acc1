"""CDISC ODM 1.3.2 export and import (SPEC section 11): the file of a varied synthetic cohort is
valid against the ODM 1.3.2 schema shipped in odmlib, carries the dictionary's metadata in English
and Dutch and the audit trail's who, when and why; imported into an empty database it gives the
same `export_cohort`; a broken file is refused at its line and nothing is written."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from lxml import etree
from odmlib.odm_parser import ODMSchemaValidator

from cohort import crf, dictionary, odm
from cohort.audit import audit_context
from cohort.importer import ImportFailed, import_odm
from cohort.models import Assessment, Centre, Patient
from cohort.services import centre_create
from reports.exports import write_export
from tests.base import make_user

pytestmark = pytest.mark.django_db

COHORT31 = Path(__file__).parent / "data" / "cohort31"
NS = {"odm": odm.NS}


@pytest.fixture
def cohort31():
    for code in ("AMC", "UMCU", "RUMC"):
        centre_create(code=code, name=f"Synthetic centre {code}")
    call_command("import_cohort", str(COHORT31), stdout=StringIO())
    monitor = make_user("monitor")
    assessment = Assessment.objects.get(patient__study_id="AMC-001", visit="week_8")
    with audit_context(user=monitor, reason="Transcription error corrected", source="web"):
        assessment.crp_mg_l = Decimal("5.2")
        assessment.save()


def export_odm(tmp_path: Path, patients=None) -> Path:
    out = tmp_path / "study.xml"
    write_export("odm_xml", out, patients=Patient.objects.all() if patients is None else patients)
    return out


def schema_errors(path: Path) -> list[str]:
    validator = ODMSchemaValidator(standard="odm", version="1.3.2")
    return [f"{error.path}: {error.reason}" for error in validator.xsd.iter_errors(str(path))]


def test_the_export_is_valid_odm_1_3_2(cohort31, tmp_path):
    path = export_odm(tmp_path)
    errors = schema_errors(path)
    print(f"ODM 1.3.2 schema validation of {path.name} ({path.stat().st_size:,} bytes): {len(errors)} error(s)")
    assert errors == []
    root = etree.parse(str(path)).getroot()
    assert (root.get("FileType"), root.get("ODMVersion")) == ("Snapshot", "1.3.2")
    assert root.get("CreationDateTime")
    assert len(root.findall("odm:ClinicalData/odm:SubjectData", NS)) == 31


def test_the_metadata_comes_from_the_data_dictionary(cohort31, tmp_path):
    root = etree.parse(str(export_odm(tmp_path))).getroot()
    version = root.find("odm:Study/odm:MetaDataVersion", NS)
    events = [e.get("OID") for e in version.findall("odm:StudyEventDef", NS)]
    assert events == ["SE.BASELINE", "SE.WEEK_0", "SE.WEEK_8", "SE.WEEK_20", "SE.WEEK_52", "SE.END"]
    assert [f.get("Name") for f in version.findall("odm:FormDef", NS)] == list(dictionary.forms())
    repeating = {g.get("Name") for g in version.findall("odm:ItemGroupDef", NS) if g.get("Repeating") == "Yes"}
    assert repeating == {"prior_biologics", "ustekinumab_doses", "adverse_events"}
    # Every variable but the keys (study ID, centre, visit) is an item, with its type.
    variables = [v for v in dictionary.variables() if v.name not in crf.KEY_VARIABLES]
    item_defs = {i.get("OID"): i for i in version.findall("odm:ItemDef", NS)}
    assert len(item_defs) == len(variables)
    birth_year = item_defs["IT.PATIENTS.BIRTH_YEAR"]
    assert birth_year.get("DataType") == "integer"
    checks = {
        c.get("Comparator"): c.findtext("odm:CheckValue", namespaces=NS)
        for c in birth_year.findall("odm:RangeCheck", NS)
    }
    assert checks == {"GE": "1920"}  # the max is this_year: no fixed value
    crp = item_defs["IT.ASSESSMENTS.CRP_MG_L"]
    assert crp.get("DataType") == "float"
    assert [c.findtext("odm:CheckValue", namespaces=NS) for c in crp.findall("odm:RangeCheck", NS)] == ["0", "500"]
    assert item_defs["IT.PATIENTS.ENROLMENT_DATE"].get("DataType") == "date"
    question = {
        t.get("{http://www.w3.org/XML/1998/namespace}lang"): t.text
        for t in item_defs["IT.PATIENTS.SEX"].findall("odm:Question/odm:TranslatedText", NS)
    }
    assert question == {"en": "Sex", "nl": "Geslacht"}
    # Code lists: the dictionary's codes, labelled in English and Dutch.
    sex = version.find("odm:CodeList[@OID='CL.PATIENTS.SEX']", NS)
    decoded = {
        item.get("CodedValue"): [t.text for t in item.findall("odm:Decode/odm:TranslatedText", NS)]
        for item in sex.findall("odm:CodeListItem", NS)
    }
    assert decoded == {"F": ["female", "vrouw"], "M": ["male", "man"]}
    yes_no = version.find("odm:CodeList[@OID='CL.YESNO']", NS)
    assert [i.get("CodedValue") for i in yes_no.findall("odm:CodeListItem", NS)] == ["yes", "no"]


def test_the_clinical_data_carry_the_values_and_the_audit_trail(cohort31, tmp_path):
    root = etree.parse(str(export_odm(tmp_path))).getroot()
    subject = root.find("odm:ClinicalData/odm:SubjectData[@SubjectKey='AMC-001']", NS)
    assert subject.find("odm:SiteRef", NS).get("LocationOID") == "LOC.AMC"
    week8 = subject.find("odm:StudyEventData[@StudyEventOID='SE.WEEK_8']/odm:FormData/odm:ItemGroupData", NS)
    crp = week8.find("odm:ItemData[@ItemOID='IT.ASSESSMENTS.CRP_MG_L']", NS)
    assert crp.get("Value") == "5.2"
    # The row's last event is the correction: its group's AuditRecord, which the value shares.
    assert crp.find("odm:AuditRecord", NS) is None
    record = week8.find("odm:AuditRecord", NS)
    assert record.findtext("odm:ReasonForChange", namespaces=NS) == "Transcription error corrected"
    assert record.findtext("odm:SourceID", namespaces=NS) == "web"
    user_oid = record.find("odm:UserRef", NS).get("UserOID")
    assert root.find(f"odm:AdminData/odm:User[@OID='{user_oid}']/odm:LoginName", NS).text == "monitor"
    assert record.find("odm:LocationRef", NS).get("LocationOID") == "LOC.AMC"
    location = root.find("odm:AdminData/odm:Location[@OID='LOC.AMC']", NS)
    assert location.get("Name") == "Synthetic centre AMC"
    # An item not changed since the import carries the import's event, an earlier one.
    hbi = week8.find("odm:ItemData[@ItemOID='IT.ASSESSMENTS.HBI']", NS)
    assert hbi.find("odm:AuditRecord/odm:SourceID", NS).text == "import_cohort"
    doses = subject.findall(
        "odm:StudyEventData[@StudyEventOID='SE.BASELINE']/odm:FormData[@FormOID='F.USTEKINUMAB_DOSES']/odm:ItemGroupData",
        NS,
    )
    assert [d.get("ItemGroupRepeatKey") for d in doses] == [str(n) for n in range(1, len(doses) + 1)]
    assert len(doses) >= 2


def test_a_centre_export_holds_only_that_centre(cohort31, tmp_path):
    root = etree.parse(str(export_odm(tmp_path, Patient.objects.filter(centre__code="UMCU")))).getroot()
    keys = [s.get("SubjectKey") for s in root.findall("odm:ClinicalData/odm:SubjectData", NS)]
    assert keys and all(key.startswith("UMCU-") for key in keys)
    assert [loc.get("OID") for loc in root.findall("odm:AdminData/odm:Location", NS)] == ["LOC.UMCU"]


def test_import_into_an_empty_database_gives_the_same_export_cohort(cohort31, tmp_path):
    path = export_odm(tmp_path)
    call_command("export_cohort", str(tmp_path / "before"), stdout=StringIO())
    Patient.all_objects.all().delete()  # the study data go; the centres stay (they must exist)
    assert not Patient.all_objects.exists()

    out = StringIO()
    call_command("import_cohort", str(path), stdout=out)
    assert "Imported" in out.getvalue()
    call_command("export_cohort", str(tmp_path / "after"), stdout=StringIO())
    for form in dictionary.forms():
        before = (tmp_path / "before" / f"{form}.csv").read_bytes()
        assert (tmp_path / "after" / f"{form}.csv").read_bytes() == before, form
    # The same file twice: nothing changes.
    summary = import_odm(path, user=None)
    assert summary.changes == 0


def broken(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text
    out = path.with_name("broken.xml")
    out.write_text(text.replace(old, new, 1), encoding="utf-8")
    return out


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_bad_value_is_refused_at_its_line_and_nothing_is_written(cohort31, tmp_path):
    path = export_odm(tmp_path)
    Patient.all_objects.all().delete()
    bad = broken(path, 'ItemOID="IT.PATIENTS.BIRTH_YEAR" Value="', 'ItemOID="IT.PATIENTS.BIRTH_YEAR" Value="19x')
    line = line_of(bad, 'Value="19x')
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_cohort", str(bad), stdout=StringIO(), stderr=err)
    assert f"broken.xml:{line}: birth_year: '19x" in err.getvalue()
    assert "is not a whole number." in err.getvalue()
    assert not Patient.all_objects.exists()


def test_unknown_items_and_broken_xml_are_reported_by_line(cohort31, tmp_path):
    path = export_odm(tmp_path)
    Patient.all_objects.all().delete()
    unknown = broken(path, '<ItemData ItemOID="IT.PATIENTS.SMOKING"', '<ItemData ItemOID="IT.PATIENTS.SHOE_SIZE"')
    with pytest.raises(ImportFailed) as failure:
        import_odm(unknown, user=None)
    line = line_of(unknown, "SHOE_SIZE")
    assert f"broken.xml:{line}: ItemOID: 'IT.PATIENTS.SHOE_SIZE' is not an item of IG.PATIENTS." in failure.value.errors

    cut = broken(path, "</ClinicalData>", "</Clinical>")
    with pytest.raises(ImportFailed) as failure:
        import_odm(cut, user=None)
    assert len(failure.value.errors) == 1 and "not well-formed XML" in failure.value.errors[0]
    assert failure.value.errors[0].startswith(f"broken.xml:{line_of(cut, '</Clinical>')}: file: ")
    assert not Patient.all_objects.exists()
    assert Centre.objects.count() == 3


def test_a_seeded_cohort_is_valid_and_round_trips(tmp_path):
    """seed_demo's cohort: every form, visits not done, discontinuations, three centres."""
    call_command(
        "seed_demo", patients=120, centres=3, seed=5, logins_file=str(tmp_path / "logins.txt"), stdout=StringIO()
    )
    path = export_odm(tmp_path)
    assert schema_errors(path) == []
    call_command("export_cohort", str(tmp_path / "before"), stdout=StringIO())
    Patient.all_objects.all().delete()
    import_odm(path, user=None)
    call_command("export_cohort", str(tmp_path / "after"), stdout=StringIO())
    for form in dictionary.forms():
        before = (tmp_path / "before" / f"{form}.csv").read_bytes()
        assert (tmp_path / "after" / f"{form}.csv").read_bytes() == before, form
    assert Patient.objects.count() == 120
