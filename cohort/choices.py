"""Choice codes of the data dictionary (shared/crf/data_dictionary.csv): the codes are binding."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class YesNo(models.TextChoices):
    YES = "yes", _("yes")
    NO = "no", _("no")


class Role(models.TextChoices):
    NURSE = "nurse", _("research nurse")
    # The centre's principal investigator: reads the centre's data and signs casebooks (SPEC 2, 10).
    INVESTIGATOR = "investigator", _("investigator")
    COORDINATOR = "coordinator", _("coordinator")
    ADMIN = "admin", _("admin")


class Sex(models.TextChoices):
    F = "F", _("female")
    M = "M", _("male")


class MontrealLocation(models.TextChoices):
    L1 = "L1", _("ileal")
    L2 = "L2", _("colonic")
    L3 = "L3", _("ileocolonic")


class MontrealBehaviour(models.TextChoices):
    B1 = "B1", _("non-stricturing non-penetrating")
    B2 = "B2", _("stricturing")
    B3 = "B3", _("penetrating")


class Smoking(models.TextChoices):
    CURRENT = "current", _("current")
    FORMER = "former", _("former")
    NEVER = "never", _("never")
    UNKNOWN = "unknown", _("unknown")


class Agent(models.TextChoices):
    INFLIXIMAB = "infliximab", _("infliximab")
    ADALIMUMAB = "adalimumab", _("adalimumab")
    CERTOLIZUMAB_PEGOL = "certolizumab_pegol", _("certolizumab pegol")
    GOLIMUMAB = "golimumab", _("golimumab")
    VEDOLIZUMAB = "vedolizumab", _("vedolizumab")
    OTHER = "other", _("other")


ANTI_TNF_AGENTS = frozenset({Agent.INFLIXIMAB, Agent.ADALIMUMAB, Agent.CERTOLIZUMAB_PEGOL, Agent.GOLIMUMAB})


class StopReason(models.TextChoices):
    PRIMARY_NONRESPONSE = "primary_nonresponse", _("primary nonresponse")
    LOSS_OF_RESPONSE = "loss_of_response", _("secondary loss of response")
    INTOLERANCE = "intolerance", _("intolerance or adverse event")
    OTHER = "other", _("other")
    UNKNOWN = "unknown", _("unknown")


class Phase(models.TextChoices):
    INITIAL_INDUCTION = "initial_induction", _("initial IV induction")
    MAINTENANCE = "maintenance", _("maintenance")
    REINDUCTION = "reinduction", _("IV re-induction")


class Route(models.TextChoices):
    IV = "iv", _("intravenous")
    SC = "sc", _("subcutaneous")


class Interval(models.TextChoices):
    Q4W = "q4w", _("every 4 weeks")
    Q6W = "q6w", _("every 6 weeks")
    Q8W = "q8w", _("every 8 weeks")
    Q12W = "q12w", _("every 12 weeks")
    OTHER = "other", _("other")


class Immunomodulator(models.TextChoices):
    NONE = "none", _("none")
    THIOPURINE = "thiopurine", _("thiopurine")
    METHOTREXATE = "methotrexate", _("methotrexate")
    OTHER = "other", _("other")


class Visit(models.TextChoices):
    WEEK_0 = "week_0", _("week 0 (re-induction)")
    WEEK_8 = "week_8", _("week 8")
    WEEK_20 = "week_20", _("week 20")
    WEEK_52 = "week_52", _("week 52")


class NotDoneReason(models.TextChoices):
    MISSED = "missed", _("visit missed")
    NOT_APPLICABLE = "not_applicable", _("not applicable (treatment stopped)")
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", _("lost to follow-up")
    UNKNOWN = "unknown", _("unknown")


class FollowUpStatus(models.TextChoices):
    ONGOING = "ongoing", _("still on ustekinumab")
    DISCONTINUED = "discontinued", _("discontinued")


class DiscontinuationReason(models.TextChoices):
    NONRESPONSE = "nonresponse", _("no response to re-induction")
    LOSS_OF_RESPONSE = "loss_of_response", _("loss of response after initial response to re-induction")
    ADVERSE_EVENT = "adverse_event", _("adverse event")
    PATIENT_WISH = "patient_wish", _("patient wish")
    SURGERY = "surgery", _("surgery")
    OTHER = "other", _("other")


class AECategory(models.TextChoices):
    INFECTION = "infection", _("infection")
    INFUSION_REACTION = "infusion_reaction", _("infusion reaction")
    INJECTION_SITE_REACTION = "injection_site_reaction", _("injection site reaction")
    SKIN = "skin", _("skin")
    ARTHRALGIA = "arthralgia", _("arthralgia")
    HEADACHE = "headache", _("headache")
    MALIGNANCY = "malignancy", _("malignancy")
    OTHER = "other", _("other")


class Causality(models.TextChoices):
    UNRELATED = "unrelated", _("unrelated")
    UNLIKELY = "unlikely", _("unlikely")
    POSSIBLE = "possible", _("possible")
    PROBABLE = "probable", _("probable")
    DEFINITE = "definite", _("definite")


class AEOutcome(models.TextChoices):
    RESOLVED = "resolved", _("resolved")
    RESOLVING = "resolving", _("resolving")
    ONGOING = "ongoing", _("ongoing")
    SEQUELAE = "sequelae", _("resolved with sequelae")
    FATAL = "fatal", _("fatal")
    UNKNOWN = "unknown", _("unknown")


class FormStatus(models.TextChoices):
    """REDCap-like record status of a form (SPEC section 3); 'not started' is the absence of a row."""

    INCOMPLETE = "incomplete", _("incomplete")
    COMPLETE = "complete", _("complete")
