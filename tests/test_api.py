"""The REST API (SPEC section 11) over real HTTP: a live server and a plain httpx client, as a
statistician's script or a site's program would use it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from io import StringIO
from pathlib import Path

import httpx
import pghistory.models
import pytest
from django.core.management import call_command
from django.utils import timezone
from openapi_spec_validator import validate

from cohort import access, csvformat
from cohort.api_auth import digest, token_create
from cohort.choices import Role
from cohort.models import ApiAccess, ApiToken, Membership, Patient
from cohort.services import centre_create
from reports.exports import write_export
from reports.models import OutcomeSnapshot
from tests.base import login_as, make_patient, make_user
from tests.conftest import point_at, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

COHORT = Path(__file__).parent / "data" / "cohort31"


@pytest.fixture
def api(live_server):
    """api(user) -> an httpx client of the API with a new token of the user (or `token=`)."""
    clients = []

    def client(user=None, *, token: str | None = None) -> httpx.Client:
        if token is None:
            _row, token = token_create(user=user, name="test")
        made = httpx.Client(
            base_url=f"{live_server.url}/api/v1/", headers={"Authorization": f"Token {token}"}, timeout=120
        )
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_a_valid_token_works_and_a_missing_unknown_expired_revoked_or_deactivated_ones_answer_401(
    api, live_server, people
):
    row, token = token_create(user=people["nurse_a"], name="R on my laptop")
    assert token.startswith(row.prefix) and row.digest == digest(token) and token not in row.digest
    nurse = api(token=token)
    response = nurse.get("centres/")
    assert response.status_code == 200
    assert response.json() == [{"code": "AMC", "name": "Synthetic Centre A"}]
    assert ApiToken.objects.get(pk=row.pk).last_used_at is not None

    anonymous = httpx.get(f"{live_server.url}/api/v1/centres/")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Token"
    assert api(token="ecrf_not-a-token").get("centres/").status_code == 401

    expired_row, expired = token_create(user=people["nurse_a"], name="old", days=1)
    ApiToken.objects.filter(pk=expired_row.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert api(token=expired).get("centres/").status_code == 401

    ApiToken.objects.filter(pk=row.pk).update(revoked_at=timezone.now())
    assert nurse.get("centres/").status_code == 401  # at once, on the next request

    other_row, other = token_create(user=people["nurse_b"], name="b")
    assert api(token=other).get("centres/").status_code == 200
    people["nurse_b"].is_active = False
    people["nurse_b"].save()
    refused = api(token=other).get("centres/")
    assert refused.status_code == 401 and "token" in refused.json()["detail"].lower()


def test_patients_are_paged_in_study_id_order_and_filtered_by_a_readable_centre(api, people):
    for centre, nurse in (("centre_b", "nurse_b"), ("centre_a", "nurse_a"), ("centre_a", "nurse_a")):
        make_patient(people[centre], people[nurse])
    make_patient(people["centre_a"], people["nurse_a"], birth_year=1990)
    coordinator = api(people["coordinator"])

    first = coordinator.get("patients/", params={"page_size": 2}).json()
    assert first["count"] == 4
    assert [p["study_id"] for p in first["results"]] == ["AMC-001", "AMC-002"]
    second = coordinator.get(first["next"]).json()
    assert [p["study_id"] for p in second["results"]] == ["AMC-003", "UMCU-001"]
    assert second["next"] is None
    assert second["results"][1] == {"study_id": "UMCU-001", "centre": "UMCU", "enrolment_date": "2022-02-01"}

    only_b = coordinator.get("patients/", params={"centre": "UMCU"}).json()
    assert [p["study_id"] for p in only_b["results"]] == ["UMCU-001"]

    nurse = api(people["nurse_a"])
    assert [p["study_id"] for p in nurse.get("patients/").json()["results"]] == ["AMC-001", "AMC-002", "AMC-003"]
    assert nurse.get("patients/", params={"centre": "UMCU"}).status_code == 404
    assert nurse.get("patients/", params={"centre": "NOPE"}).status_code == 404


def test_a_patient_reads_as_the_import_files_and_another_centres_patient_answers_404(api, people, patient):
    nurse = api(people["nurse_a"])
    response = nurse.get(f"patients/{patient.study_id}/")
    assert response.status_code == 200
    body = response.json()
    assert (body["study_id"], body["centre"]) == (patient.study_id, "AMC")
    # Exactly the rows, columns and cell text of export_cohort's files for this patient.
    for form, rows in body["forms"].items():
        header, expected = csvformat.export_rows(form, Patient.objects.filter(pk=patient.pk))
        assert [list(row) for row in rows] == [header] * len(rows)
        assert [list(row.values()) for row in rows] == expected, form
    assert body["forms"]["assessments"][1]["visit"] == "week_8"
    assert body["forms"]["patients"][0]["montreal_location"] == "L3"

    nurse_b = api(people["nurse_b"])
    other, missing = nurse_b.get(f"patients/{patient.study_id}/"), nurse_b.get("patients/AMC-999/")
    assert (other.status_code, other.content) == (404, missing.content)  # as one that does not exist
    assert nurse.get("patients/AMC-999/").status_code == 404
    assert api(people["coordinator"]).get(f"patients/{patient.study_id}/").status_code == 200

    logged = list(ApiAccess.objects.order_by("id").values_list("user__username", "method", "endpoint", "study_id"))
    endpoint = f"/api/v1/patients/{patient.study_id}/"
    study_id = patient.study_id
    assert logged == [("nurse_a", "GET", endpoint, study_id), ("coordinator", "GET", endpoint, study_id)]


def test_the_outcomes_of_a_scope_are_the_latest_snapshot_with_its_data_version(api, people, patient):
    # No broker in this test: the enrolment's recompute ran in-process once it committed.
    snapshot = OutcomeSnapshot.objects.filter(scope="AMC").latest()
    nurse = api(people["nurse_a"])
    body = nurse.get("outcomes/AMC/").json()
    assert body["outcomes"] == snapshot.result and body["outcomes"]["scope"] == "AMC"
    assert body["data_version"] == snapshot.data_version
    assert dt.datetime.fromisoformat(body["computed_at"]) == snapshot.computed_at
    assert nurse.get("outcomes/all/").status_code == 404  # study-wide outcomes: coordinators
    assert nurse.get("outcomes/UMCU/").status_code == 404
    assert api(people["coordinator"]).get("outcomes/all/").json()["scope"] == "all"
    assert ApiAccess.objects.filter(user=people["nurse_a"], scope="AMC", detail="outcomes").count() == 1


def test_the_dictionary_lists_every_variable_with_its_codes(api, people):
    rows = api(people["nurse_a"]).get("dictionary/").json()
    sex = next(row for row in rows if row["variable"] == "sex")
    assert sex["form"] == "patients" and sex["choices"].startswith("F=")
    assert {row["form"] for row in rows} >= {"patients", "assessments", "wide"}


def cohort_files(prefix: str = "") -> dict[str, bytes]:
    """The synthetic cohort's form files, only the patients whose study ID starts with `prefix`."""
    files = {}
    for path in sorted(COHORT.glob("*.csv")):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        files[path.name] = "".join([lines[0], *(line for line in lines[1:] if line.startswith(prefix))]).encode()
    return files


def as_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_nurse_imports_her_centres_patients_all_or_nothing_and_twice_changes_nothing(api, people):
    centre_create(code="RUMC", name="Synthetic centre RUMC")
    nurse = api(people["nurse_a"])
    reason = "Transcribed from the paper CRFs"

    # Other centres' patients in the files: refused at their lines, nothing written.
    refused = nurse.post("imports/", data={"reason": reason}, files={"file": ("cohort.zip", as_zip(cohort_files()))})
    assert refused.status_code == 400
    errors = refused.json()["errors"]
    message = "you cannot enter data at centre RUMC."
    refusal = {"file": "patients.csv", "row": 14, "variable": "centre", "message": message}
    assert refusal in errors
    assert all(error["file"] == "patients.csv" or error["variable"] == "study_id" for error in errors)
    assert Patient.all_objects.count() == 0

    amc = cohort_files("AMC-")
    written = nurse.post("imports/", data={"reason": reason}, files={"file": ("amc.zip", as_zip(amc))})
    assert written.status_code == 200, written.text
    summary = written.json()
    assert summary["created"]["patients"] == 12 and summary["changes"] > 11
    assert set(Patient.objects.values_list("centre__code", flat=True)) == {"AMC"}
    context = pghistory.models.Context.objects.get(metadata__reason=reason)
    assert context.metadata["user"] == people["nurse_a"].pk and context.metadata["source"] == "api_import"

    # The same files again, as separate CSV files this time: nothing changes.
    again = nurse.post("imports/", data={"reason": reason}, files={n: (n, data) for n, data in amc.items()})
    assert again.status_code == 200 and again.json()["changes"] == 0

    # A dry run answers the change set and writes nothing (no reason needed).
    changed = dict(amc)
    first = b"AMC-001,AMC,2021-10-04,yes,"
    changed["patients.csv"] = changed["patients.csv"].replace(first + b"M,", first + b"F,", 1)
    events = pghistory.models.Context.objects.count()
    dry = nurse.post("imports/", data={"dry_run": "true"}, files={"file": ("amc.zip", as_zip(changed))})
    assert dry.status_code == 200, dry.text
    assert dry.json()["changes"] == 1 and dry.json()["updated"] == {"patients": 1}
    patient_row = {"form": "patients", "action": "changed", "row": "", "fields": [["sex", "M", "F"]]}
    assert dry.json()["patients"] == [{"study_id": "AMC-001", "centre": "AMC", "new": False, "rows": [patient_row]}]
    assert Patient.objects.get(study_id="AMC-001").sex == "M"
    assert pghistory.models.Context.objects.count() == events

    bad = dict(amc)
    bad["patients.csv"] = bad["patients.csv"].replace(first + b"M,", first + b"X,", 1)
    refused = nurse.post("imports/", data={"reason": reason}, files={"file": ("bad.zip", as_zip(bad))})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"file": "patients.csv", "row": 2, "variable": "sex", "message": refused.json()["errors"][0]["message"]}
    ]
    assert "X" in refused.json()["errors"][0]["message"]
    assert Patient.objects.get(study_id="AMC-001").sex == "M"

    unreasoned = nurse.post("imports/", files={"file": ("amc.zip", as_zip(amc))})
    assert unreasoned.status_code == 400 and "reason" in unreasoned.json()
    nothing = nurse.post("imports/", data={"reason": reason}, files={"file": ("notes.txt", b"hello")})
    assert nothing.status_code == 400
    ((error),) = nothing.json()["errors"]
    assert error["file"] == "notes.txt" and "is not a form file" in error["message"]


def test_the_api_refuses_zip_path_tricks_and_zip_bombs_as_the_import_page_does(api, people, monkeypatch):
    """One upload check (cohort.uploads) for the page and the API; its problems as import errors."""
    import struct

    from cohort import uploads

    nurse = api(people["nurse_a"])
    amc = cohort_files("AMC-")

    def post(name: str, data: bytes) -> httpx.Response:
        return nurse.post("imports/", data={"reason": "x"}, files={"file": (name, data)})

    for member in ("../patients.csv", "/etc/patients.csv"):
        response = post("evil.zip", as_zip({member: amc["patients.csv"]}))
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {"file": "evil.zip", "row": 0, "variable": "", "message": f"evil.zip: {member} points outside the zip."}
        ]
    # A zip bomb: a few kB that unpack to far more than allowed (the limit scaled down for the test).
    monkeypatch.setattr(uploads, "MAX_UNZIPPED_BYTES", 2**20)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("patients.csv", "w") as member:
        for _ in range(32):
            member.write(b"0" * 2**20)
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    response = post("bomb.zip", bomb)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"file": "bomb.zip", "row": 0, "variable": "", "message": "bomb.zip unpacks to more than 1 MB."}
    ]
    # The same bomb declaring itself small (its headers lie): its sizes are not trusted.
    liar = bytearray(bomb)
    local, central = liar.index(b"PK\x03\x04"), liar.index(b"PK\x01\x02")
    struct.pack_into("<I", liar, local + 22, 100)
    struct.pack_into("<I", liar, central + 24, 100)
    response = post("liar.zip", bytes(liar))
    assert response.status_code == 400
    ((error),) = response.json()["errors"]
    assert error["file"] == "liar.zip" and "not a readable zip" in error["message"]
    # A file that is not UTF-8 is answered at its line.
    latin = amc["patients.csv"].decode().replace("AMC-001", "AMC-001é", 1).encode("latin-1")
    response = post("patients.csv", latin)
    ((error),) = response.json()["errors"]
    assert (error["file"], error["row"]) == ("patients.csv", 2) and "not UTF-8" in error["message"]
    assert Patient.all_objects.count() == 0


def test_read_only_roles_get_403_on_imports_and_a_nurse_cannot_touch_another_centres_patient(api, people):
    investigator = make_user("investigator_a", centre=people["centre_a"], role=Role.INVESTIGATOR)
    amc = as_zip(cohort_files("AMC-"))
    for user in (investigator, people["coordinator"]):
        response = api(user).post("imports/", data={"reason": "x"}, files={"file": ("amc.zip", amc)})
        assert response.status_code == 403, user
    assert Patient.all_objects.count() == 0

    stranger = make_patient(people["centre_b"], people["nurse_b"])
    header = (COHORT / "follow_up.csv").read_text().splitlines()[0]
    follow_up = f"{header}\n{stranger.study_id},ongoing,2023-07-01,,,,\n".encode()
    response = api(people["nurse_a"]).post(
        "imports/", data={"reason": "x"}, files={"follow_up.csv": ("follow_up.csv", follow_up)}
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["file"], error["row"], error["variable"]) == ("follow_up.csv", 2, "study_id")
    assert "unknown patient" in error["message"]  # the same answer as for a patient that does not exist


@pytest.mark.services
def test_an_export_is_requested_polled_and_downloaded_through_a_real_worker(
    api, people, patient, media, redis_server, test_database_url, celery_on_redis, tmp_path
):
    make_patient(people["centre_b"], people["nurse_b"])
    broker = redis_server.rsplit("/", 1)[0] + "/6"  # a worker of its own, not the suite's
    point_at(celery_on_redis, broker)
    log = tmp_path / "celery.log"
    worker = start_worker(test_database_url, broker, log, name="api", MEDIA_ROOT=str(media))
    try:
        coordinator = api(people["coordinator"])
        requested = coordinator.post("exports/", json={"kind": "wide_csv"})
        assert requested.status_code == 202, requested.text
        job = requested.json()
        assert job["scope"] == "all" and job["kind"] == "wide_csv"

        def done() -> bool:
            state = coordinator.get(f"exports/{job['id']}/").json()
            return state["status"] == "done"

        wait_for(done, timeout=90, what="the export job", log=log)
    finally:
        stop(worker)
    state = coordinator.get(f"exports/{job['id']}/").json()
    download = coordinator.get(state["download"])
    assert download.status_code == 200
    expected = tmp_path / "expected.csv"
    write_export("wide_csv", expected, patients=access.patients_in_scope("all"))
    assert download.content == expected.read_bytes()  # the browser's file, byte for byte
    rows = list(csv.DictReader(StringIO(download.text)))
    assert [row["study_id"] for row in rows] == [patient.study_id, "UMCU-001"]

    nurse_b = api(people["nurse_b"])
    assert nurse_b.get(f"exports/{job['id']}/").status_code == 404
    assert nurse_b.get(f"exports/{job['id']}/download/").status_code == 404
    assert nurse_b.post("exports/", json={"kind": "wide_csv", "centre": "AMC"}).status_code == 404
    bad_kind = nurse_b.post("exports/", json={"kind": "everything"})
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()

    logged = list(ApiAccess.objects.filter(user=people["coordinator"]).order_by("id").values_list("method", "scope"))
    assert logged == [("POST", "all"), ("GET", "all")]


def test_the_rate_limit_per_token_answers_429_with_retry_after(api, people, settings):
    settings.API_RATE = "3/min"
    nurse, other = api(people["nurse_a"]), api(people["nurse_a"])
    assert [nurse.get("centres/").status_code for _ in range(3)] == [200, 200, 200]
    limited = nurse.get("centres/")
    assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 60
    assert other.get("centres/").status_code == 200  # counted per token


def test_the_openapi_schema_is_valid_and_the_docs_page_is_served_without_a_cdn(live_server):
    response = httpx.get(f"{live_server.url}/api/v1/schema/", params={"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert {"/api/v1/patients/", "/api/v1/exports/", "/api/v1/imports/", "/api/v1/outcomes/{scope}/"} <= set(
        schema["paths"]
    )
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    docs = httpx.get(f"{live_server.url}/api/v1/docs/")
    assert docs.status_code == 200 and "/static/drf_spectacular_sidecar/redoc" in docs.text
    assert "cdn" not in docs.text.lower()


def test_the_account_page_makes_a_token_once_lists_and_revokes_it(client, people):
    login_as(client, people["coordinator"])  # with her second factor, as the middleware requires
    page = client.post("/accounts/api-tokens/", {"name": "R analysis", "days": "30"})
    assert page.status_code == 200 and page["Cache-Control"].startswith("max-age=0")
    row = ApiToken.objects.get(user=people["coordinator"])
    token = page.context["new_token"]
    assert row.digest == digest(token) and token in page.content.decode()
    assert abs(row.expires_at - row.created_at - dt.timedelta(days=30)) < dt.timedelta(seconds=5)
    listing = client.get("/accounts/api-tokens/").content.decode()
    assert token not in listing and row.prefix in listing
    assert client.post("/accounts/api-tokens/", {"name": "", "days": "1000"}).context["form"].errors.keys() == {
        "name",
        "days",
    }

    login_as(client, people["nurse_a"])
    assert client.post(f"/accounts/api-tokens/{row.pk}/revoke/").status_code == 404  # not hers
    login_as(client, people["coordinator"])
    client.post(f"/accounts/api-tokens/{row.pk}/revoke/")
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_the_admin_revokes_anyones_token_and_reads_the_access_log(client, people):
    row, _token = token_create(user=people["nurse_a"], name="x")
    login_as(client, people["admin"])
    response = client.post("/admin/cohort/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}, follow=True)
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert client.get("/admin/cohort/apiaccess/").status_code == 200
    assert client.get("/admin/cohort/apiaccess/add/").status_code == 403


def test_the_api_token_command_prints_a_token_that_works(api, people):
    out, err = StringIO(), StringIO()
    call_command("api_token", "nurse_a", "--days", "7", stdout=out, stderr=err)
    token = out.getvalue().strip()
    row = ApiToken.objects.get(digest=digest(token))
    assert row.user == people["nurse_a"] and row.prefix in err.getvalue()
    assert dt.timedelta(days=6, hours=23) < row.expires_at - timezone.now() <= dt.timedelta(days=7)
    assert api(token=token).get("centres/").status_code == 200
    with pytest.raises(Exception, match="no user named"):
        call_command("api_token", "nobody", stdout=out, stderr=err)


def test_a_membership_removed_takes_the_access_away_at_once(api, people, patient):
    nurse = api(people["nurse_a"])
    assert nurse.get(f"patients/{patient.study_id}/").status_code == 200
    Membership.objects.filter(user=people["nurse_a"]).delete()
    assert nurse.get(f"patients/{patient.study_id}/").status_code == 404
    assert json.loads(nurse.get("centres/").text) == []


def test_a_page_of_patients_and_a_patient_cost_the_same_queries_whatever_the_cohort(client, people, patient):
    """In-process (the test client), where the queries can be counted: none grows with the patients."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _row, token = token_create(user=people["coordinator"], name="count")
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}

    def counted(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path, **auth).status_code == 200
        return len(queries)

    counted("/api/v1/centres/")  # the token's first use writes its last_used_at (then once a minute)
    before = (counted("/api/v1/patients/"), counted(f"/api/v1/patients/{patient.study_id}/"))
    for _ in range(4):
        make_patient(people["centre_b"], people["nurse_b"])
    after = (counted("/api/v1/patients/"), counted(f"/api/v1/patients/{patient.study_id}/"))
    assert before == after
    # token, memberships, count, page, the access log; token, memberships, patient, 7 forms, the log
    assert after[0] <= 5 and after[1] <= 11, after
