"""Nothing of another centre reaches a nurse (SPEC section 2): every patient-bearing URL, with every
study ID and every row id of centre B, answers nurse A exactly as for a patient or row that does not
exist; B's study IDs appear on no page she can reach. Coordinators, who read every centre, are the
positive control."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from cohort import crf
from cohort.models import Patient
from tests.base import login_as, make_patient, make_record, personae
from tests.test_permissions import keys_of, table_counts, url_patterns

pytestmark = pytest.mark.django_db

MISSING_STUDY_ID = "UMCU-999"  # well-formed, never enrolled
MISSING_PK = 999_999


@pytest.fixture
def people():
    people = personae()
    people["own"] = make_record(make_patient(people["centre_a"], people["nurse_a"]))
    people["others"] = [make_record(make_patient(people["centre_b"], people["nurse_b"])) for _ in range(3)]
    return people


def signed_in(user) -> Client:
    return login_as(Client(), user)


def patient_urls(patient: Patient, *, rows_of: Patient | None = None) -> list[tuple[str, str]]:
    """(URL, the same URL for a nonexistent patient or row) for every patient-bearing pattern: every
    form key, every row of `rows_of` (default: the patient's own) for row ids, also as `?edit=`."""
    rows_of = rows_of or patient
    urls = []
    for name, pattern in url_patterns().items():
        groups = set(pattern.pattern.regex.groupindex)
        # The API answers a browser session 401 whoever's patient it is; tests/test_api.py asks it
        # with the nurse's token, and gets a 404 for centre B's patient as for one that does not exist.
        if "study_id" not in groups or name.startswith("api:"):
            continue
        assert groups <= {"study_id", "key", "pk"}, f"{name}: teach patient_urls() how to fill {sorted(groups)}"
        for key in keys_of(pattern) if "key" in groups else [None]:
            base = {"study_id": patient.study_id} | ({"key": key} if key else {})
            missing = base | {"study_id": MISSING_STUDY_ID}
            if "pk" in groups:
                for pk in crf.form(key).model.objects.filter(patient=rows_of).values_list("pk", flat=True):
                    urls.append((reverse(name, kwargs=base | {"pk": pk}), reverse(name, kwargs=missing | {"pk": pk})))
                continue
            urls.append((reverse(name, kwargs=base), reverse(name, kwargs=missing)))
            if name == "cohort:rows":
                for pk in crf.form(key).model.objects.filter(patient=rows_of).values_list("pk", flat=True):
                    edit = f"?edit={pk}"
                    urls.append((reverse(name, kwargs=base) + edit, reverse(name, kwargs=missing) + edit))
    return urls


def row_ids_urls(patient: Patient, rows_of: Patient) -> list[tuple[str, str]]:
    """Only the URLs of `patient` that carry a row id of `rows_of`, paired with a nonexistent row id."""
    pairs = []
    for url, _missing in patient_urls(patient, rows_of=rows_of):
        for pk in _row_pks(rows_of):
            if f"/{pk}/delete/" in url:
                pairs.append((url, url.replace(f"/{pk}/delete/", f"/{MISSING_PK}/delete/")))
            elif url.endswith(f"?edit={pk}"):
                pairs.append((url, url.removesuffix(f"?edit={pk}") + f"?edit={MISSING_PK}"))
    return sorted(set(pairs))


def _row_pks(patient: Patient) -> set[int]:
    models = [form.model for form in crf.FORMS if form.repeating]
    return {pk for model in models for pk in model.objects.filter(patient=patient).values_list("pk", flat=True)}


POST_ONLY = ("/delete/", "/casebook-pdf/", "/flags/confirm/", "/lock/", "/unlock/", "/verify/", "/queries/new/")


def same_answer(client: Client, method: str, url: str, missing_url: str, study_id: str) -> str | None:
    """None when `url` is answered like `missing_url`: a 404, or a 405 for a GET of a POST-only URL
    or a POST to a page that only shows data (refused before any patient is looked up)."""
    response = getattr(client, method)(url)
    control = getattr(client, method)(missing_url)
    post_only = url.endswith(POST_ONLY)
    # The CRF forms and the signing page take a GET and a POST.
    read_only_page = not any(part in url for part in ("/forms/", "/rows/", "/sign/")) and not post_only
    refused_method = post_only if method == "get" else read_only_page
    expected = 405 if refused_method else 404
    if response.status_code != expected or control.status_code != expected:
        got = f"{response.status_code} (nonexistent: {control.status_code})"
        return f"{method.upper()} {url}: {got}, expected {expected}"
    if study_id.encode() in response.content or response.content != control.content:
        return f"{method.upper()} {url}: the body differs from a nonexistent patient's"
    return None


def test_every_url_of_another_centres_patient_is_not_found(client, people):
    login_as(client, people["nurse_a"])
    before = table_counts()
    wrong = []
    for other in people["others"]:
        for url, missing_url in patient_urls(other):
            for method in ("get", "post"):
                wrong.append(same_answer(client, method, url, missing_url, other.study_id))
    assert [problem for problem in wrong if problem] == []
    assert table_counts() == before  # B's rows were not changed or deleted by any of the POSTs
    assert len(wrong) > 2 * 3 * 20  # every form key and row id was tried, for each of the three patients


def test_another_centres_row_ids_under_her_own_patient_are_not_found(client, people):
    login_as(client, people["nurse_a"])
    before = table_counts()
    wrong = []
    tried = 0
    for other in people["others"]:
        for url, missing_url in row_ids_urls(people["own"], other):
            tried += 1
            for method in ("get", "post"):
                wrong.append(same_answer(client, method, url, missing_url, other.study_id))
    assert [problem for problem in wrong if problem] == []
    assert table_counts() == before
    assert tried == 3 * 2 * 6  # 6 repeating rows per patient, each by ?edit= and by its delete URL


def b_identifiers(people) -> list[str]:
    return [patient.study_id for patient in people["others"]]


def test_nothing_of_centre_b_appears_on_any_page_nurse_a_reaches(client, people):
    login_as(client, people["nurse_a"])
    pages = [reverse("cohort:patient-list"), reverse("cohort:patient-list") + "?q=UMCU"]
    pages += [reverse("cohort:patient-list") + f"?q={study_id}" for study_id in b_identifiers(people)]
    pages += [url for url, _missing in patient_urls(people["own"]) if not url.endswith("/delete/")]
    pages += [reverse(name) for name, pattern in url_patterns().items() if not pattern.pattern.regex.groupindex]
    reached = 0
    for page in pages:
        response = client.get(page, follow=True)
        if response.status_code != 200:
            continue
        reached += 1
        # The search box (and the language menu's return address) repeat what she typed; that is
        # her own input, not centre B's data.
        query = (response.context or {}).get("query")
        body = response.content.decode().replace(f'value="{query}"', "").replace(f"?q={query}", "")
        for study_id in b_identifiers(people):
            assert study_id not in body, f"{page} shows {study_id}"
        assert people["centre_b"].name not in body, f"{page} names centre B"
    assert reached >= 15

    search = client.get(reverse("cohort:patient-list"), {"q": "UMCU"})
    assert search.status_code == 200
    assert [row.patient.study_id for row in search.context["rows"]] == []
    listed = client.get(reverse("cohort:patient-list"))
    assert [row.patient.study_id for row in listed.context["rows"]] == [people["own"].study_id]


def test_a_coordinator_sees_every_centre(client, people):
    """Positive control: the same pages do show centre B to a coordinator."""
    login_as(client, people["coordinator"])
    listed = client.get(reverse("cohort:patient-list")).content.decode()
    searched = client.get(reverse("cohort:patient-list"), {"q": "UMCU"})
    for study_id in b_identifiers(people):
        assert study_id in listed
        assert study_id in searched.content.decode()
    assert people["own"].study_id in listed
    assert people["own"].study_id not in searched.content.decode()
    other = people["others"][0]
    casebook = client.get(reverse("cohort:patient-detail", args=[other.study_id]))
    assert casebook.status_code == 200
    assert other.study_id in casebook.content.decode()
