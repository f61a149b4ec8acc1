"""The permission matrix, generated from the URL configuration (SPEC section 2, STYLE: Access).

Every named URL pattern outside the admin is requested by every persona with GET and POST, and the
status code is compared with the EXPECTED table below. A pattern without a row in the table fails
`test_every_url_pattern_has_an_expectation`, so a new view cannot be added without deciding who may
use it. URL arguments are filled from a complete patient of centre A: every form key the pattern
accepts, and a stored row of that form for `pk`.

Every GET of the matrix must also leave the database as it was: the row count of every table of
the cohort app (the audit event tables included), of pghistory's contexts and of the TOTP devices
is compared.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from cohort import crf
from tests.base import login_as, make_patient, make_record, personae

pytestmark = pytest.mark.django_db

PERSONAE = ("anonymous", "nurse_a", "nurse_b", "coordinator", "admin")

# Expected answers. LOGIN: a redirect to our login page. WRITE: a write by a user allowed to write,
# sent without form data: the form again with its errors (200) or done and redirected (302).
LOGIN = "login"
WRITE = (200, 302)


def row(anonymous, nurse_a, nurse_b, coordinator, admin) -> dict[str, tuple]:
    """Each argument is (GET, POST) for that persona, on centre A's patient."""
    return dict(zip(PERSONAE, (anonymous, nurse_a, nurse_b, coordinator, admin), strict=True))


# Pages that only show data: anyone who may read the patient gets them; they take no POST.
READ_ONLY_PATIENT_PAGE = row((LOGIN, LOGIN), (200, 405), (404, 405), (200, 405), (200, 405))
# A CRF form: readable like the casebook, writable by the centre's nurses only (403 for read-only roles).
CRF_FORM = row((LOGIN, LOGIN), (200, WRITE), (404, 404), (200, 403), (200, 403))

EXPECTED: dict[str, dict[str, tuple]] = {
    # cohort: data entry
    "cohort:home": row((LOGIN, LOGIN), (302, 302), (302, 302), (302, 302), (302, 302)),
    "cohort:patient-list": row((LOGIN, LOGIN), (200, 405), (200, 405), (200, 405), (200, 405)),
    # Only research nurses enrol (at their own centres); the others are read-only everywhere.
    "cohort:patient-enrol": row((LOGIN, LOGIN), (200, WRITE), (200, WRITE), (403, 403), (403, 403)),
    "cohort:patient-detail": READ_ONLY_PATIENT_PAGE,
    "cohort:patient-history": READ_ONLY_PATIENT_PAGE,
    "cohort:form": CRF_FORM,
    "cohort:rows": CRF_FORM,
    # POST only: a GET is 405 for everyone signed in, whether or not the row is theirs.
    "cohort:row-delete": row((LOGIN, LOGIN), (405, 302), (405, 404), (405, 403), (405, 403)),
    # Soft delete, POST only; sent without a reason it removes nothing and returns to the casebook.
    "cohort:patient-delete": row((LOGIN, LOGIN), (405, 302), (405, 404), (405, 403), (405, 403)),
    # Confirming a flagged value changes no study data: the centre's nurses and coordinators may; an
    # empty request confirms nothing and returns to the casebook. The admin reads only.
    "cohort:flag-confirm": row((LOGIN, LOGIN), (405, 302), (405, 404), (405, 302), (405, 403)),
    # Locks (SPEC section 10): coordinators only; an empty request locks nothing and goes back.
    "cohort:patient-lock": row((LOGIN, LOGIN), (405, 403), (405, 404), (405, 302), (405, 403)),
    "cohort:patient-unlock": row((LOGIN, LOGIN), (405, 403), (405, 404), (405, 302), (405, 403)),
    # Data queries (SPEC section 10): everyone sees the list of the queries they may see; a query
    # is read like its patient; a POST without an action is refused (403). Raising: coordinators.
    "cohort:query-list": row((LOGIN, LOGIN), (200, 405), (200, 405), (200, 405), (200, 405)),
    "cohort:query": row((LOGIN, LOGIN), (200, 403), (404, 404), (200, 403), (200, 403)),
    "cohort:query-raise": row((LOGIN, LOGIN), (405, 403), (405, 404), (405, 302), (405, 403)),
    # Source data verification: coordinators only; changes no study data.
    "cohort:verify": row((LOGIN, LOGIN), (405, 403), (405, 404), (405, 302), (405, 403)),
    # Signing (SPEC section 10): the investigators of the patient's centre only (none of these
    # personae; tests/test_signatures.py signs). The form page and the POST alike.
    "cohort:sign": row((LOGIN, LOGIN), (403, 403), (404, 404), (403, 403), (403, 403)),
    "cohort:lock-list": row((LOGIN, LOGIN), (403, 405), (403, 405), (200, 405), (403, 405)),
    "cohort:lock-new": row((LOGIN, LOGIN), (405, 403), (405, 403), (405, 302), (405, 403)),
    "cohort:lock-unlock": row((LOGIN, LOGIN), (405, 403), (405, 403), (405, 302), (405, 403)),
    # Import with a preview (cohort/import_views.py): nurses and coordinators; an empty upload or an
    # apply without a reason is the form again with its error (400). An upload is its uploader's
    # only (here nurse A's): anyone else gets 404, a role that cannot import 403.
    "reports:import-upload": row((LOGIN, LOGIN), (200, 400), (200, 400), (200, 400), (403, 403)),
    "reports:import-detail": row((LOGIN, LOGIN), (200, 405), (404, 405), (404, 405), (403, 405)),
    "reports:import-status": row((LOGIN, LOGIN), (200, 405), (404, 405), (404, 405), (403, 405)),
    "reports:import-apply": row((LOGIN, LOGIN), (405, 400), (405, 404), (405, 404), (405, 403)),
    # accounts (cohort/account_urls.py)
    "login": row((200, 200), (200, 200), (200, 200), (200, 200), (200, 200)),
    "logout": row((LOGIN, LOGIN), (405, 302), (405, 302), (405, 302), (405, 302)),
    # Passwords (cohort/passwords.py): changing one's own needs a login (an empty POST: the form
    # again); a reset and an invitation are for people who cannot sign in, so open to all. A link
    # with a made-up token answers the "link no longer works" page, whatever the method.
    "password-change": row((LOGIN, LOGIN), (200, 200), (200, 200), (200, 200), (200, 200)),
    "password-reset": row((200, 200), (200, 200), (200, 200), (200, 200), (200, 200)),
    "password-reset-done": row((200, 405), (200, 405), (200, 405), (200, 405), (200, 405)),
    "password-reset-confirm": row((200, 200), (200, 200), (200, 200), (200, 200), (200, 200)),
    "password-reset-complete": row((200, 405), (200, 405), (200, 405), (200, 405), (200, 405)),
    "invitation-accept": row((200, 200), (200, 200), (200, 200), (200, 200), (200, 200)),
    "mfa": row((LOGIN, LOGIN), (200, 200), (200, 200), (200, 200), (200, 200)),
    "mfa-setup": row((LOGIN, LOGIN), (200, 200), (200, 200), (200, 200), (200, 200)),
    # Already verified (coordinator, admin) or without a device (nurses): sent on.
    "mfa-verify": row((LOGIN, LOGIN), (302, 302), (302, 302), (302, 302), (302, 302)),
    "mfa-disable": row((LOGIN, LOGIN), (405, 302), (405, 302), (405, 302), (405, 302)),
    # Open to anonymous visitors (the login page has the language menu too).
    "language-set": row((405, 302), (405, 302), (405, 302), (405, 302), (405, 302)),
    "session-keepalive": row((LOGIN, LOGIN), (405, 200), (405, 200), (405, 200), (405, 200)),
    # API tokens (cohort/token_views.py): one's own; an empty POST is the form again with its errors.
    # Revoking a token that is not one's own (here: none exists) answers 404.
    "api-tokens": row((LOGIN, LOGIN), (200, 200), (200, 200), (200, 200), (200, 200)),
    "api-token-revoke": row((LOGIN, LOGIN), (405, 404), (405, 404), (405, 404), (405, 404)),
    # reports: the outcomes dashboard of a scope, here centre A's (nurse B reads only centre B's); GET only.
    "reports:dashboard-default": row((LOGIN, LOGIN), (200, 405), (200, 405), (200, 405), (200, 405)),
    "reports:dashboard": READ_ONLY_PATIENT_PAGE,
    "reports:status": READ_ONLY_PATIENT_PAGE,
    # reports and exports: a done job of centre A (requested by nurse A). Requesting one is not a
    # change to study data: every reader may ask (an empty request just returns to the list).
    "reports:report-list": row((LOGIN, LOGIN), (200, 405), (200, 405), (200, 405), (200, 405)),
    "reports:report-request": row((LOGIN, LOGIN), (405, 302), (405, 302), (405, 302), (405, 302)),
    "reports:job-status": READ_ONLY_PATIENT_PAGE,
    "reports:job-download": READ_ONLY_PATIENT_PAGE,
    # Whoever requested it, or a coordinator; the admin reads centre A but did not request it.
    "reports:job-retry": row((LOGIN, LOGIN), (405, 302), (405, 404), (405, 302), (405, 403)),
    "reports:casebook-request": row((LOGIN, LOGIN), (405, 302), (405, 404), (405, 302), (405, 302)),
    # The REST API (reports/api_urls.py) signs in by token only: a browser session, like no login,
    # gets 401 everywhere (tests/test_api.py has the matrix by token). The schema and its docs page
    # describe the API, no data: open to all, GET only.
    **{
        f"api:{name}": row(*[(401, 401)] * len(PERSONAE))
        for name in (
            "centre-list",
            "patient-list",
            "patient-detail",
            "outcomes",
            "dictionary",
            "export-list",
            "export-detail",
            "export-download",
            "import",
        )
    },
    "api:schema": row(*[(200, 405)] * len(PERSONAE)),
    "api:docs": row(*[(200, 405)] * len(PERSONAE)),
}


def url_patterns(resolver=None, namespace: str = "") -> dict[str, URLPattern]:
    """Every named pattern of the site by its full name ('cohort:form'), the admin's left out."""
    found: dict[str, URLPattern] = {}
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace) if part)
            if inner.split(":")[0] != "admin":
                found.update(url_patterns(pattern, inner))
        elif pattern.name:
            found[f"{namespace}:{pattern.name}" if namespace else pattern.name] = pattern
    return found


def keys_of(pattern: URLPattern) -> list[str]:
    """The alternatives of the pattern's `key` group, e.g. every single form's key."""
    match = re.search(r"\(\?P<key>([\w|]+)\)", pattern.pattern.regex.pattern)
    assert match, f"cannot read the form keys of {pattern.pattern}"
    return match.group(1).split("|")


def urls_for(name: str, pattern: URLPattern, patient) -> list[str]:
    """The pattern reversed for `patient`: once per form key it accepts, with a stored row for `pk`."""
    groups = set(pattern.pattern.regex.groupindex)
    unknown = groups - {"study_id", "key", "pk", "scope", "job_id", "import_id", "uidb64", "token"}
    assert not unknown, f"{name}: teach urls_for() how to fill {sorted(unknown)}"
    if not groups:
        return [reverse(name)]
    if groups == {"uidb64", "token"}:  # a one-time link of the patient's nurse, with a made-up token
        uidb64 = urlsafe_base64_encode(force_bytes(patient.created_by.pk))
        return [reverse(name, kwargs={"uidb64": uidb64, "token": "cm1u6o-0123456789abcdef0123456789abcdef"})]
    if groups == {"scope"}:  # an outcomes scope: the patient's centre
        return [reverse(name, kwargs={"scope": patient.centre.code})]
    if groups == {"pk"}:  # a data query on the patient
        return [reverse(name, kwargs={"pk": a_query(patient).pk})]
    if groups == {"import_id"}:  # an import previewed for the patient's nurse
        return [reverse(name, kwargs={"import_id": an_import(patient).pk})]
    if groups == {"job_id"}:  # a finished report of the patient's centre
        return [reverse(name, kwargs={"job_id": finished_job(patient).pk})]
    urls = []
    for key in keys_of(pattern) if "key" in groups else [None]:
        kwargs = {"study_id": patient.study_id}
        if key is not None:
            kwargs["key"] = key
        if "pk" in groups:
            model = crf.form(key).model
            kwargs["pk"] = model.objects.filter(patient=patient).values_list("pk", flat=True).first()
        urls.append(reverse(name, kwargs=kwargs))
    return urls


def a_query(patient):
    """An open query on the patient's week-8 CRP (made on first use)."""
    from cohort import queries
    from cohort.models import Query

    found = Query.objects.filter(patient=patient).first()
    if found is None:
        coordinator = next(m.user for m in patient.centre.memberships.all() if m.role == "coordinator")
        found = queries.raise_query(
            patient=patient, form_key="week_8", row_id=None, field="crp_mg_l", text="CRP?", by=coordinator
        )
    return found


def an_import(patient):
    """An upload of the patient's nurse, previewed as changing nothing (made on first use)."""
    from reports.models import ImportJob

    preview = {"counts": {bucket: {} for bucket in ("created", "updated", "deleted", "unchanged")}, "patients": []}
    return ImportJob.objects.get_or_create(
        uploaded_by=patient.created_by, defaults={"status": ImportJob.Status.READY, "preview": preview}
    )[0]


def finished_job(patient):
    from reports.jobs import job_dir
    from reports.models import ReportJob

    job = ReportJob.objects.create(
        kind=ReportJob.Kind.DICTIONARY_CSV, scope=patient.centre.code, requested_by=patient.created_by, status="done"
    )
    job.file_name = f"{job.pk}-dictionary_csv-{job.scope}.csv"
    (job_dir() / job.file_name).write_text("form,variable\n")
    job.save(update_fields=["file_name"])
    return job


def table_counts() -> dict[str, int]:
    """Rows in every table of the cohort app (audit events included), pghistory's contexts and the TOTP devices."""
    models = [model for app in ("cohort", "pghistory", "otp_totp") for model in apps.get_app_config(app).get_models()]
    tables = [model for model in models if model._meta.managed and not model._meta.proxy]
    return {model._meta.label: model._base_manager.count() for model in tables}


def status_matches(response, expected) -> bool:
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    if isinstance(expected, tuple):
        return response.status_code in expected
    return response.status_code == expected


def client_for(people, persona: str, **kwargs) -> Client:
    client = Client(**kwargs)
    if persona != "anonymous":
        login_as(client, people[persona])
    return client


@pytest.fixture
def people():
    people = personae()
    people["patient"] = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    return people


def test_every_url_pattern_has_an_expectation():
    names = set(url_patterns())
    assert "cohort:patient-detail" in names and "login" in names  # the walk found both URL files
    assert names - set(EXPECTED) == set(), "new URL patterns: add them to EXPECTED in tests/test_permissions.py"
    assert set(EXPECTED) - names == set(), "EXPECTED names URL patterns that no longer exist"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_permission_matrix(people, name):
    pattern = url_patterns()[name]
    wrong = []
    # POSTs in this order: nurse_a's (allowed) delete of the row comes after the others tried it.
    requests = [("get", persona) for persona in PERSONAE]
    requests += [("post", persona) for persona in sorted(PERSONAE, key="nurse_a".__eq__)]
    for method, persona in requests:
        expected = EXPECTED[name][persona][0 if method == "get" else 1]
        for url in urls_for(name, pattern, people["patient"]):
            client = client_for(people, persona)
            before = table_counts() if method == "get" else None
            response = getattr(client, method)(url)
            if not status_matches(response, expected):
                got = f"{response.status_code} {response.get('Location', '')}".strip()
                wrong.append(f"{method.upper()} {url} as {persona}: {got} (expected {expected})")
            if before is not None:
                assert table_counts() == before, f"GET {url} as {persona} changed the database"
    assert wrong == [], "\n".join(wrong)


def test_a_post_without_the_csrf_token_is_refused(people):
    client = client_for(people, "nurse_a", enforce_csrf_checks=True)
    url = reverse("cohort:form", args=[people["patient"].study_id, "week_8"])
    data = {"hbi": "1", "reason_for_change": "typo"}
    before = table_counts()

    response = client.post(url, data)

    assert response.status_code == 403
    assert table_counts() == before
    # The same request with the token from the page gets through to the form.
    token = client.get(url).cookies["csrftoken"].value
    assert client.post(url, data, headers={"X-CSRFToken": token}).status_code in WRITE


def test_the_admin_needs_a_staff_login(people):
    admin_index = reverse("admin:index")
    for persona in ("anonymous", "nurse_a", "nurse_b", "coordinator"):
        response = client_for(people, persona).get(admin_index, follow=True)
        assert response.redirect_chain, persona
        assert response.redirect_chain[-1][0].startswith("/accounts/login/"), persona
    assert client_for(people, "admin").get(admin_index).status_code == 200
