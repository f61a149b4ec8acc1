"""The Django admin: admins manage centres, accounts and memberships and read the audit trail.

Accounts: an admin invites a user (a one-time set-password link by e-mail, cohort.passwords), and the
user list is the access review (roles, centres, last login, second factor; a CSV of it).

Study forms are listed too (read and corrected by admins); every save goes through the same
service as the casebook's (cohort.services.crf_row_save: the validation layer, the version the
admin opened, a reason for change on completed forms, the audit context and the recompute)."""

from __future__ import annotations

import smtplib

import pghistory.models
from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from cohort import access_review, api_auth, crf, locks, passwords, services, validators
from cohort.choices import Role
from cohort.forms import NUMBER_FORM_FIELDS
from cohort.models import (
    REASON_MAX_LENGTH,
    AdverseEvent,
    ApiAccess,
    ApiToken,
    Assessment,
    CasebookSummary,
    Centre,
    CrfRowTally,
    DataCheckRequest,
    FlagConfirmation,
    FollowUp,
    Lock,
    Membership,
    Patient,
    PriorBiologic,
    Query,
    QueryMessage,
    Reinduction,
    Signature,
    UserProfile,
    UstekinumabDose,
    Verification,
    WaitingQueries,
)


class RecordCheckedForm(forms.ModelForm):
    """A study form in the admin, saved like the casebook saves it: the cross-form rules of the
    patient's whole record, the version the admin opened (optimistic lock) and a reason for change
    when the form was marked complete (services.crf_row_save, which checks them all again)."""

    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    reason_for_change = forms.CharField(
        required=False,
        max_length=REASON_MAX_LENGTH,
        help_text="Required when changing a record that was marked complete.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["loaded_version"].initial = self.instance.version

    def _post_clean(self):
        super()._post_clean()
        row = self.instance
        patient = row if isinstance(row, Patient) else getattr(row, "patient", None)
        if patient is None or self.errors:
            return
        try:
            locks.refuse_if_locked(patient, row)
        except locks.Locked as error:
            self.add_error(None, error)
            return
        if row.pk:
            stored = type(row)._base_manager.filter(pk=row.pk).first()
            try:
                services.check_edit(
                    row,
                    stored,
                    expected_version=self.cleaned_data.get("loaded_version"),
                    reason=self.cleaned_data.get("reason_for_change", ""),
                )
            except services.EditConflict:
                self.add_error(None, EDITED_MEANWHILE)
                return
            except ValidationError as error:
                self.add_error(None, error)
        record = services.patient_record(patient, confirmations=False) if patient.pk else crf.PatientRecord(patient)
        record = record.with_row(row)
        # The validation layer's one entry point. The row's own rules hold here (Django's model
        # validation above passed), so what it adds are the rules of the whole record.
        for problem in validators.check(record, [row]):
            if problem.row is row and problem.field in self.fields:
                self.add_error(problem.field, problem.message)
            elif problem.row is row:
                self.add_error(None, f"{problem.label} {problem.message}")
            else:
                self.add_error(
                    NON_FIELD_ERRORS,
                    str(problem),
                )


EDITED_MEANWHILE = "Someone else saved this record after you opened it; nothing was saved. Reload the page."


class CrfSavedAdmin(admin.ModelAdmin):
    """Saves go through services.crf_row_save (lock, version, reason, audit context, recompute).
    Rows are removed in the casebook, where the rest of the record is checked and a reason asked."""

    form = RecordCheckedForm
    # Numbers read as the casebook reads them (cohort.forms), not <input type=number>, where
    # Chromium drops a Dutch decimal comma (12,5 saved as 125).
    # (The admin looks choice fields up before these overrides, as crf_formfield does.)
    formfield_overrides = {
        model_class: {"form_class": form_class, "widget": forms.TextInput}
        for model_class, form_class in NUMBER_FORM_FIELDS.items()
    }

    def save_model(self, request, obj, form, change):
        try:
            services.crf_row_save(
                row=obj,
                by=request.user,
                expected_version=form.cleaned_data.get("loaded_version") if change else None,
                reason=form.cleaned_data.get("reason_for_change", ""),
                source="admin",
            )
        except services.EditConflict:
            request._crf_save_error = EDITED_MEANWHILE  # between the form's checks and the lock
        except ValidationError as error:
            request._crf_save_error = " ".join(error.messages)

    def response_add(self, request, obj, post_url_continue=None):
        return self._refused(request) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        return self._refused(request) or super().response_change(request, obj)

    def _refused(self, request):
        error = getattr(request, "_crf_save_error", None)
        if error is None:
            return None
        self.message_user(request, error, level=messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Centre)
class CentreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "active"]
    search_fields = ["code", "name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "centre", "role"]
    list_filter = ["role", "centre"]
    search_fields = ["user__username", "centre__code"]
    autocomplete_fields = ["user", "centre"]


class CrfAdmin(CrfSavedAdmin):
    readonly_fields = ["version", "created_at", "updated_at"]
    list_select_related = ["patient"]
    search_fields = ["patient__study_id"]
    autocomplete_fields = ["patient"]

    def get_queryset(self, request):
        # Rows of removed patients are hidden, as their patients are (Patient.objects).
        return super().get_queryset(request).filter(patient__in=Patient.objects.all())


@admin.register(Patient)
class PatientAdmin(CrfSavedAdmin):
    list_display = ["study_id", "centre", "enrolment_date", "sex", "birth_year", "form_status"]
    list_filter = ["centre", "form_status"]
    list_select_related = ["centre"]
    search_fields = ["study_id"]
    readonly_fields = ["version", "created_by", "created_at", "updated_at", "montreal_age"]

    def get_readonly_fields(self, request, obj=None):
        # The study ID and centre never change once a patient exists.
        return [*self.readonly_fields, "study_id", "centre"] if obj else self.readonly_fields

    def has_add_permission(self, request):
        # Enrolment assigns the study ID (the casebook), or the import file names it.
        return False


@admin.register(PriorBiologic)
class PriorBiologicAdmin(CrfAdmin):
    list_display = ["patient", "agent", "start_date", "stop_date", "stop_reason"]
    list_filter = ["agent"]


@admin.register(UstekinumabDose)
class UstekinumabDoseAdmin(CrfAdmin):
    list_display = ["patient", "dose_date", "phase", "route", "dose_mg", "weight_kg", "off_weight_band"]
    list_filter = ["phase", "route"]

    @admin.display(boolean=True, description="Off weight band")
    def off_weight_band(self, obj):
        return obj.off_weight_band


@admin.register(Reinduction)
class ReinductionAdmin(CrfAdmin):
    list_display = ["patient", "lor_date", "interval_before", "interval_after"]


@admin.register(Assessment)
class AssessmentAdmin(CrfAdmin):
    list_display = ["patient", "visit", "not_done", "assessment_date", "hbi", "crp_mg_l", "fcal_ug_g"]
    list_filter = ["visit", "not_done"]


@admin.register(FollowUp)
class FollowUpAdmin(CrfAdmin):
    list_display = [
        "patient",
        "status",
        "last_follow_up_date",
        "discontinuation_date",
        "discontinuation_reason",
    ]
    list_filter = ["status", "discontinuation_reason"]


@admin.register(AdverseEvent)
class AdverseEventAdmin(CrfAdmin):
    list_display = ["patient", "onset_date", "category", "serious", "led_to_discontinuation"]
    list_filter = ["category", "serious"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FlagConfirmation)
class FlagConfirmationAdmin(ReadOnlyAdmin):
    """Confirmed flags are read here; they are given in the casebook, by whoever checked the value."""

    list_display = ["patient", "form", "field", "basis", "confirmed_by", "confirmed_at", "comment"]
    list_select_related = ["patient", "confirmed_by"]
    search_fields = ["patient__study_id"]


@admin.register(Verification)
class VerificationAdmin(ReadOnlyAdmin):
    """Source data verification marks are read here; coordinators mark them in the casebook."""

    list_display = ["patient", "form", "row_id", "row_version", "verified_by", "verified_at"]
    list_select_related = ["patient", "verified_by"]
    search_fields = ["patient__study_id"]


@admin.register(Lock)
class LockAdmin(ReadOnlyAdmin):
    """Locks are read here; coordinators lock and unlock in the casebook or with `manage.py lock`."""

    list_display = ["kind", "centre", "patient", "form", "row_id", "reason", "locked_by", "locked_at", "unlocked_at"]
    list_filter = ["kind", "unlocked_at"]
    list_select_related = ["centre", "patient", "locked_by"]
    search_fields = ["patient__study_id", "centre__code", "reason"]


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    """Signatures are read here; investigators sign in the casebook, and only a later change of the
    casebook (a database trigger) makes one no longer valid."""

    list_display = ["patient", "signed_by", "signed_at", "invalidated_at", "invalidated_because"]
    list_select_related = ["patient", "signed_by"]
    search_fields = ["patient__study_id"]


@admin.register(CrfRowTally)
class CrfRowTallyAdmin(ReadOnlyAdmin):
    """The per-centre tallies behind the monitoring figures, read here to check them; triggers append
    them and the hourly data checks fold them (cohort.monitoring.fold_tallies)."""

    list_display = ["centre", "patients", "crf_rows", "waiting_queries", "answered_queries", "patients_waiting"]
    list_select_related = ["centre"]


@admin.register(WaitingQueries)
class WaitingQueriesAdmin(ReadOnlyAdmin):
    """Each patient's count of queries waiting for the site, read here to check it: triggers keep it
    (migration 0022), behind the centres' patients with a waiting query."""

    list_display = ["patient", "waiting"]
    list_select_related = ["patient"]
    search_fields = ["patient__study_id"]


@admin.register(CasebookSummary)
class CasebookSummaryAdmin(ReadOnlyAdmin):
    """The patient list's summary of each casebook, read here to check it: the data checks store
    them (cohort.listing), triggers raise the data stamp; one whose stamps differ is not used."""

    list_display = ["patient", "data_stamp", "summary_stamp"]
    list_select_related = ["patient"]
    search_fields = ["patient__study_id"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every user's API tokens (never the token itself: only its hash is stored). An admin revokes
    them here; users make and revoke their own on their account page or with `manage.py api_token`."""

    list_display = ["prefix", "user", "name", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "prefix", "name"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, not deleted: the access log names the token

    @admin.action(description=_("Revoke the selected tokens"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(api_auth.token_revoke(token) for token in queryset)
        self.message_user(request, _("%(count)d token(s) revoked.") % {"count": revoked}, messages.SUCCESS)


@admin.register(ApiAccess)
class ApiAccessAdmin(ReadOnlyAdmin):
    """The API's access log (SPEC section 11): every read of patient data, export and import by
    token. Written by the API only, append-only (a database trigger)."""

    list_display = ["at", "user", "method", "endpoint", "scope", "study_id", "detail"]
    list_filter = ["method", "scope"]
    list_select_related = ["user"]
    search_fields = ["user__username", "study_id", "endpoint"]
    date_hierarchy = "at"


class QueryMessageInline(admin.TabularInline):
    model = QueryMessage
    fields = ["at", "author", "action", "state", "text"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Query)
class QueryAdmin(ReadOnlyAdmin):
    """Queries are read here with their messages; coordinators raise, close and re-open them and
    nurses answer in the casebook (/queries/); messages are append-only in the database."""

    list_display = ["pk", "patient", "form", "field", "state", "rule", "raised_by", "raised_at", "updated_at"]
    list_filter = ["state", "rule", "form"]
    list_select_related = ["patient", "raised_by"]
    search_fields = ["patient__study_id"]
    inlines = [QueryMessageInline]


@admin.register(QueryMessage)
class QueryMessageAdmin(ReadOnlyAdmin):
    list_display = ["query", "at", "author", "action", "state"]
    list_select_related = ["query__patient", "author"]
    search_fields = ["query__patient__study_id"]


class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is read-only here; the database also refuses updates and deletes."""

    list_display = ["pgh_created_at", "pgh_label", "pgh_obj_id", "pgh_context"]
    list_filter = ["pgh_label"]
    ordering = ["-pgh_created_at", "-pgh_id"]


for model in apps.get_app_config("cohort").get_models():
    if issubclass(model, pghistory.models.Event):
        admin.site.register(model, AuditEventAdmin)


@admin.register(UserProfile)
class UserProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "language"]
    list_filter = ["language"]


# ---------------------------------------------------------------------------------------------
# Accounts (SPEC section 2): invitations by e-mail and the access review.


class InvitationForm(forms.Form):
    username = forms.CharField(
        label=_("User name"), max_length=150, validators=[UnicodeUsernameValidator()], help_text=_("Used to sign in.")
    )
    email = forms.EmailField(label=_("E-mail address"), help_text=_("The invitation is sent here."))
    language = forms.ChoiceField(
        label=_("Language"), choices=settings.LANGUAGES, help_text=_("Of the e-mails and of the app.")
    )
    centre = forms.ModelChoiceField(label=_("Centre"), queryset=Centre.objects.filter(active=True))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError(_("An account with this user name already exists."))
        return username

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError(_("An account with this e-mail address already exists."))
        return email


class CentreFilter(admin.RelatedFieldListFilter):
    """The memberships' centre, under a heading in the reader's language."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("Centre")


class AccountAdmin(UserAdmin):
    """Django's user admin, plus the access review's columns and file, and invitations."""

    # What the review asks of each account, narrow enough to read without scrolling on a laptop;
    # the e-mail address and the staff flags are in the CSV and the filters.
    list_display = [
        "username",
        "roles",
        "is_active",
        "password_set",
        "second_factor_required",
        "second_factor_set_up",
        "last_login",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", "memberships__role", ("memberships__centre", CentreFilter)]
    actions = ["send_invitation"]
    change_list_template = "admin/auth/user/account_change_list.html"

    def get_queryset(self, request):
        return access_review.accounts(super().get_queryset(request))

    @admin.display(description=_("Roles and centres"))
    def roles(self, user):
        return access_review.roles_text(user)

    @admin.display(boolean=True, description=_("Password"))
    def password_set(self, user):
        return user.has_usable_password()

    @admin.display(boolean=True, description=_("TOTP required"))
    def second_factor_required(self, user):
        return access_review.totp_required(user)

    @admin.display(boolean=True, description=_("TOTP on"), ordering="has_totp")
    def second_factor_set_up(self, user):
        return user.has_totp

    @admin.action(description=_("Send a new invitation"), permissions=["change"])
    def send_invitation(self, request, queryset):
        """Only to accounts that have no password yet; the others reset theirs themselves."""
        invited, skipped = [], []
        for user in queryset:
            (skipped if user.has_usable_password() or not user.email else invited).append(user)
        for user in invited:
            passwords.invitation_send(user=user, request=request)
        if invited:
            names = ", ".join(user.get_username() for user in invited)
            self.message_user(request, _("Invitation sent to %(names)s.") % {"names": names}, messages.SUCCESS)
        if skipped:
            names = ", ".join(user.get_username() for user in skipped)
            self.message_user(
                request,
                _("Not sent to %(names)s: already has a password (use 'Forgot your password?') or no e-mail address.")
                % {"names": names},
                messages.WARNING,
            )

    def get_urls(self):
        own = [
            path("invite/", self.admin_site.admin_view(self.invite_view), name="auth_user_invite"),
            path(
                "access-review.csv",
                self.admin_site.admin_view(self.access_review_view),
                name="auth_user_access_review",
            ),
        ]
        return own + super().get_urls()

    def invite_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InvitationForm(request.POST or None, initial={"language": translation.get_language()})
        if request.method == "POST" and form.is_valid():
            try:
                user = passwords.account_invite(request=request, **form.cleaned_data)
            except (smtplib.SMTPException, OSError) as error:
                message = _("The e-mail could not be sent, so no account was made: %(error)s")
                form.add_error(None, message % {"error": error})
            else:
                self.message_user(request, _("Invitation sent to %(email)s.") % {"email": user.email}, messages.SUCCESS)
                return redirect("admin:auth_user_change", user.pk)
        context = self.admin_site.each_context(request) | {
            "title": _("Invite a user"),
            "form": form,
            "opts": self.opts,
            "days": settings.INVITATION_TIMEOUT // (24 * 3600),
        }
        return TemplateResponse(request, "admin/auth/user/invite.html", context)

    def access_review_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(
            access_review.csv_text(access_review.accounts().order_by("username")), content_type="text/csv"
        )
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = f'attachment; filename="access-review-{stamp}.csv"'
        return response


admin.site.unregister(User)
admin.site.register(User, AccountAdmin)


@admin.register(DataCheckRequest)
class DataCheckRequestAdmin(ReadOnlyAdmin):
    """The patients whose automatic data queries are due: saves write them, the data-checks task
    removes them as it checks each patient (cohort.data_checks.run_requested)."""

    list_display = ["patient", "requested_at"]
