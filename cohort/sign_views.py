"""Signing a casebook in the browser (SPEC section 10): the investigators of the patient's centre
sign from the casebook's dialog, or on this page without JavaScript. Whoever reads the patient sees
the signature panel (cohort/views.py patient_detail); no one else may open this page."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cohort import access, signatures
from cohort.queries import not_closed


class SignForm(forms.Form):
    """The signer's password again, and the authenticator's code where the account has one."""

    password = forms.CharField(
        label=gettext_lazy("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    otp_token = forms.CharField(
        label=gettext_lazy("Code from your authenticator app"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}),
    )

    def __init__(self, *args, totp: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not totp:
            del self.fields["otp_token"]


@login_required
def sign(request: HttpRequest, study_id: str) -> HttpResponse:
    """GET: the signing form as a page; POST: sign, back to the casebook, or the form with why not."""
    patient = access.get_patient_for_user(request.user, study_id)
    if not access.can_sign(request.user, patient):
        raise PermissionDenied(_("Only an investigator of the patient's centre signs its casebook."))
    record = signatures.record_of(patient)
    panel = signatures.panel(record, queries=not_closed(patient), user=request.user)
    form = SignForm(request.POST or None, totp=panel.totp)
    if request.method == "POST" and form.is_valid():
        try:
            signatures.sign(
                patient=patient,
                by=request.user,
                password=form.cleaned_data["password"],
                otp_token=form.cleaned_data.get("otp_token", ""),
                request=request,
            )
        except signatures.SigningRefused as refused:
            form.add_error(None, refused)
        else:
            messages.success(request, _("Casebook %(id)s signed.") % {"id": patient.study_id})
            return redirect("cohort:patient-detail", patient.study_id)
    return render(
        request,
        "cohort/patient_sign.html",
        {"patient": patient, "signing": panel, "form": form, "title": _("Sign casebook")},
    )
