"""The Django admin: admins manage centres, accounts and memberships and read the audit trail.

Study forms are listed too (read and corrected by admins); every save goes through the same
service as the casebook's (cohort.services.crf_row_save: the validation layer, the version the
admin opened, a reason for change on completed forms, the audit context and the recompute)."""

from __future__ import annotations

import pghistory.models
from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpResponseRedirect

from cohort import crf, locks, services, validators
from cohort.forms import NUMBER_FORM_FIELDS
from cohort.models import (
    REASON_MAX_LENGTH,
    AdverseEvent,
    Assessment,
    Centre,
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
                self.add_error(None, f"{problem.field}: {problem.message}")
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
