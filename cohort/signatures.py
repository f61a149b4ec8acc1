"""Investigator signatures of a casebook (SPEC section 10; 21 CFR 11.50, 11.70, 11.200).

An investigator of the patient's centre signs a casebook whose forms are all complete and that has
no query left open, by entering the password again (and the TOTP code where the account has a
second factor). The signature keeps the signer, the UTC time, the meaning and a hash of the signed
data (`data_hash`), which binds it to exactly those data.

A later change to the casebook, through any path, makes the signature no longer valid: database
triggers (cohort/migrations/0010) set `invalidated_at` whenever a CRF row of the patient is
inserted, changed or removed, the removal of the patient included. Whoever reads a signature also
compares its hash with the data as they are now (`entries`), so a change the triggers did not see
(one committed while the signature was being written) still shows the signature as no longer valid.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_otp.plugins.otp_totp.models import TOTPDevice

from cohort import access, casebook, crf, csvformat, services
from cohort.audit import audit_context
from cohort.choices import FormStatus
from cohort.models import SIGNATURE_MEANING, Patient, Query, QueryState, Signature
from cohort.queries import not_closed

# Why a signature is no longer valid, as stored (the triggers of migration 0010 write the first).
CHANGED_AFTER_SIGNING = "casebook changed after signing"
DATA_DIFFER = "the casebook's data differ from the signed data"
REASONS = {
    CHANGED_AFTER_SIGNING: gettext_lazy("casebook changed after signing"),
    DATA_DIFFER: gettext_lazy("the casebook's data differ from the signed data"),
}
# The meaning as the signer reads it, in the signer's language; the stored meaning is the English
# text (21 CFR 11.50), whose translation is in locale/nl.
MEANING = gettext_lazy(SIGNATURE_MEANING)

VALID = "valid"
INVALID = "invalid"
UNSIGNED = "unsigned"


class SigningRefused(ValidationError):
    """The casebook was not signed: why, by field ("password", "otp_token") or as a whole."""


# --- what is signed ---------------------------------------------------------------------------


def data_hash(record: crf.PatientRecord) -> str:
    """SHA-256 of the casebook's entered data: every form in casebook order, its rows by id, each
    row's entered fields as the import format writes them (csvformat.cell_text). The same data give
    the same hash in any process; a change to any entered value, row or form status changes it."""
    rows = [["study_id", record.patient.study_id]]
    for form in crf.FORMS:
        for row in sorted(form.rows(record), key=lambda row: row.pk or 0):
            fields = crf.entered_fields(form.model)
            rows.append([form.key, row.pk, {f.name: csvformat.cell_text(getattr(row, f.attname)) for f in fields}])
    canonical = json.dumps(rows, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _not_needed(record: crf.PatientRecord, today: dt.date) -> set[str]:
    """Forms without rows that the record says are not expected: the adverse events when the
    follow-up answers 'no adverse events', a visit after a discontinuation ended the follow-up."""
    ended = {visit.visit for visit in casebook.visit_schedule(record, today) if visit.state == "ended"}
    return ended | casebook.answered_none(record)


def blockers(record: crf.PatientRecord, queries: list[Query], *, today: dt.date | None = None) -> list[str]:
    """Why the casebook cannot be signed now (SPEC section 10): a form not started or not marked
    complete, a flagged value not confirmed, a query not closed. Empty: it can be signed."""
    not_needed = _not_needed(record, today or timezone.localdate())
    reasons = []
    for cell in casebook.form_cells(record):
        case_form = crf.form(cell.key)
        rows = case_form.rows(record)
        if not rows and cell.key not in not_needed:
            reasons.append(_("%(form)s is not started.") % {"form": case_form.title})
        elif any(row.form_status != FormStatus.COMPLETE for row in rows):
            reasons.append(_("%(form)s is not marked complete.") % {"form": case_form.title})
        if cell.flags:
            reasons.append(_("%(form)s has a flagged value to confirm.") % {"form": case_form.title})
    waiting = sum(query.state != QueryState.CLOSED for query in queries)
    if waiting:
        reasons.append(
            ngettext("%(count)s query is not closed.", "%(count)s queries are not closed.", waiting)
            % {"count": waiting}
        )
    return reasons


# --- signing ----------------------------------------------------------------------------------


def device_of(user: User) -> TOTPDevice | None:
    """The account's confirmed second factor, if it has one: signing asks for its code too."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def _check_password(user: User, password: str, request: HttpRequest | None) -> None:
    """The signer's own password, entered again (21 CFR 11.200). Through the login's backends when
    there is a request, so a wrong password counts toward the login throttling (django-axes) and
    a locked-out account cannot sign either."""
    if request is None:
        correct = user.check_password(password)
    else:
        correct = authenticate(request, username=user.get_username(), password=password) == user
    if not correct:
        raise SigningRefused({"password": _("The password is not correct. Nothing was signed.")})


def _check_token(device: TOTPDevice | None, token: str) -> None:
    """The code of the account's authenticator app, as at login (django-otp throttles wrong codes
    and refuses a code used before)."""
    if device is None:
        return
    token = (token or "").replace(" ", "")
    if not token.isdigit() or len(token) != 6:
        raise SigningRefused({"otp_token": _("Enter the 6-digit code from your authenticator app.")})
    allowed, _details = device.verify_is_allowed()
    if not allowed:
        raise SigningRefused({"otp_token": _("Too many wrong codes. Wait a minute before trying again.")})
    if not device.verify_token(token):
        raise SigningRefused({"otp_token": _("That code is not valid. Try the next code your app shows.")})


def sign(
    *, patient: Patient, by: User, password: str, otp_token: str = "", request: HttpRequest | None = None
) -> Signature:
    """Sign the patient's casebook as `by`, an investigator of its centre, who entered the password
    (and the TOTP code) again. Refused (SigningRefused) while anything blocks it or when it is
    signed already; PermissionDenied for anyone but the centre's investigators.

    The credentials are checked before the transaction, so that a wrong attempt stays counted.
    The record is read and hashed with the patient row locked: a web save of the patient waits."""
    if not access.can_sign(by, patient):
        raise PermissionDenied(_("Only an investigator of the patient's centre signs its casebook."))
    _refuse_if_blocked(record_of(patient))  # before the password: a blocked casebook costs no attempt
    _check_password(by, password, request)
    _check_token(device_of(by), otp_token)
    with transaction.atomic(), audit_context(user=by, reason=SIGNATURE_MEANING, source="sign"):
        list(Patient.objects.select_for_update().filter(pk=patient.pk).values_list("pk", flat=True))
        record = record_of(patient)
        _refuse_if_blocked(record)
        signed = data_hash(record)
        valid = Signature.objects.filter(patient=patient, invalidated_at__isnull=True).first()
        if valid is not None and valid.data_hash == signed:
            raise SigningRefused(_("This casebook is signed already; nothing was signed again."))
        if valid is not None:  # changed unseen by the triggers: said now, in the same transaction
            Signature.objects.filter(pk=valid.pk).update(invalidated_at=timezone.now(), invalidated_because=DATA_DIFFER)
        return Signature.objects.create(
            patient=patient, signed_by=by, signed_at=timezone.now(), meaning=SIGNATURE_MEANING, data_hash=signed
        )


def record_of(patient: Patient) -> crf.PatientRecord:
    """The patient's whole record as it is now (the forms and the confirmed flags)."""
    fresh = services.with_forms(Patient.objects.filter(pk=patient.pk)).get()
    return services.patient_record(fresh)


def _refuse_if_blocked(record: crf.PatientRecord) -> None:
    found = blockers(record, not_closed(record.patient))
    if found:
        raise SigningRefused([_("The casebook cannot be signed yet:"), *found])


# --- reading ----------------------------------------------------------------------------------


def of_patient(patient: Patient) -> list[Signature]:
    """Every signature of the casebook, valid or not, newest first, with its signer. One query,
    composed once per process."""
    return _of_patient_statement().run({access.PATIENT_ID: patient.pk})


@functools.cache
def _of_patient_statement() -> access.CompiledRows:
    return access.CompiledRows.of(Signature.objects.filter(patient_id=access.PATIENT_ID).select_related("signed_by"))


@dataclass
class Entry:
    """A signature as the casebook and its PDF show it."""

    signature: Signature
    valid: bool
    because: str  # why it is no longer valid, in the reader's language

    @property
    def signer(self) -> str:
        return self.signature.signed_by.get_username()

    @property
    def signed_at(self) -> dt.datetime:
        return self.signature.signed_at.astimezone(dt.UTC)

    @property
    def invalidated_at(self) -> dt.datetime | None:
        found = self.signature.invalidated_at
        return found.astimezone(dt.UTC) if found else None

    @property
    def meaning(self) -> str:
        return str(MEANING) if self.signature.meaning == SIGNATURE_MEANING else self.signature.meaning


def entries(signatures: list[Signature], current_hash: str) -> list[Entry]:
    """Each signature with whether it is valid now: not invalidated, and its hash that of the data."""
    found = []
    for signature in signatures:
        if signature.invalidated_at is not None:
            stored = signature.invalidated_because
            found.append(Entry(signature, False, str(REASONS.get(stored, stored))))
        elif signature.data_hash != current_hash:
            found.append(Entry(signature, False, str(REASONS[DATA_DIFFER])))
        else:
            found.append(Entry(signature, True, ""))
    return found


def valid_of_patients(patients) -> dict[int, Signature]:
    """The valid signature of each of these patients that has one (a page of the list), by patient
    id. One query; `signs` then compares each with its casebook's data hash."""
    found = _valid_statement().run({access.PATIENT_IDS: [patient.pk for patient in patients]})
    return {signature.patient_id: signature for signature in found}


@functools.cache
def _valid_statement() -> access.CompiledRows:
    """valid_of_patients' query, composed by the ORM once per process."""
    return access.CompiledRows.of(
        Signature.objects.filter(patient_id__in=access.any_patient_id(), invalidated_at__isnull=True).order_by()
    )


def signs(valid: Signature | None, hashed: str | None) -> bool:
    """Whether this valid signature (or None) signs the data whose data_hash is `hashed`."""
    return valid is not None and valid.data_hash == hashed


def has_valid_signature() -> models.Exists:
    """In a query over patients: the casebook has a valid signature (not invalidated since)."""
    return models.Exists(Signature.objects.filter(patient=models.OuterRef("pk"), invalidated_at__isnull=True))


def without_valid_signature(patients: models.QuerySet[Patient]) -> models.QuerySet[Patient]:
    """The patients whose casebook has no valid signature (never signed, or changed since). In SQL
    a NOT IN over the valid signatures' patients, which PostgreSQL hashes once (the patient list's
    filter and its count: a NOT EXISTS probed the signatures once per patient, 40 ms for AMC's 23,650
    patients at 100,000)."""
    return patients.exclude(pk__in=validly_signed_ids())


def validly_signed_ids() -> models.QuerySet[Signature]:
    """The ids of the patients whose casebook has a valid signature (any patient, removed or not):
    those `without_valid_signature` leaves out."""
    return Signature.objects.filter(invalidated_at__isnull=True).order_by().values("patient_id")  # never NULL


def history(record: crf.PatientRecord) -> list[Entry]:
    """Every signature of the casebook, newest first, each valid or not as the data are now."""
    signatures = of_patient(record.patient)
    # The data's hash only when a signature may still be valid (entries compares no other).
    current = data_hash(record) if any(signature.invalidated_at is None for signature in signatures) else ""
    return entries(signatures, current)


def current(patient: Patient, record: crf.PatientRecord | None = None) -> Signature | None:
    """The casebook's valid signature, or None (never signed, or changed since)."""
    valid = [entry for entry in history(record or record_of(patient)) if entry.valid]
    return valid[0].signature if valid else None


@dataclass
class Panel:
    """The casebook's signature: its history, what blocks signing, and whether this user signs."""

    entries: list[Entry]
    blockers: list[str]
    can_sign: bool = False
    totp: bool = False  # the signer's account has a second factor: the dialog asks for its code

    @property
    def meaning(self) -> str:
        """What signing attests, in the reader's language."""
        return str(MEANING)

    @property
    def latest(self) -> Entry | None:
        return self.entries[0] if self.entries else None

    @property
    def state(self) -> str:
        """valid, invalid (signed before, needs signing again) or unsigned."""
        if self.latest is None:
            return UNSIGNED
        return VALID if self.latest.valid else INVALID


def panel(record: crf.PatientRecord, *, queries: list[Query], user: User | AnonymousUser | None = None) -> Panel:
    """The casebook page's and the PDF's signature panel (one query, two for a signer)."""
    can_sign = user is not None and access.can_sign(user, record.patient)
    return Panel(
        entries=history(record),
        blockers=blockers(record, queries),
        can_sign=can_sign,
        totp=can_sign and device_of(user) is not None,
    )
