"""Choice codes of the data dictionary (shared/crf/data_dictionary.csv): the codes are binding."""

from django.db import models


class YesNo(models.TextChoices):
    YES = "yes", "yes"
    NO = "no", "no"


class Role(models.TextChoices):
    NURSE = "nurse", "research nurse"
    COORDINATOR = "coordinator", "coordinator"
    ADMIN = "admin", "admin"


class Sex(models.TextChoices):
    F = "F", "female"
    M = "M", "male"


class MontrealLocation(models.TextChoices):
    L1 = "L1", "ileal"
    L2 = "L2", "colonic"
    L3 = "L3", "ileocolonic"


class MontrealBehaviour(models.TextChoices):
    B1 = "B1", "non-stricturing non-penetrating"
    B2 = "B2", "stricturing"
    B3 = "B3", "penetrating"


class Smoking(models.TextChoices):
    CURRENT = "current", "current"
    FORMER = "former", "former"
    NEVER = "never", "never"
    UNKNOWN = "unknown", "unknown"


class Agent(models.TextChoices):
    INFLIXIMAB = "infliximab", "infliximab"
    ADALIMUMAB = "adalimumab", "adalimumab"
    CERTOLIZUMAB_PEGOL = "certolizumab_pegol", "certolizumab pegol"
    GOLIMUMAB = "golimumab", "golimumab"
    VEDOLIZUMAB = "vedolizumab", "vedolizumab"
    OTHER = "other", "other"


ANTI_TNF_AGENTS = frozenset({Agent.INFLIXIMAB, Agent.ADALIMUMAB, Agent.CERTOLIZUMAB_PEGOL, Agent.GOLIMUMAB})


class StopReason(models.TextChoices):
    PRIMARY_NONRESPONSE = "primary_nonresponse", "primary nonresponse"
    LOSS_OF_RESPONSE = "loss_of_response", "secondary loss of response"
    INTOLERANCE = "intolerance", "intolerance or adverse event"
    OTHER = "other", "other"
    UNKNOWN = "unknown", "unknown"


class Phase(models.TextChoices):
    INITIAL_INDUCTION = "initial_induction", "initial IV induction"
    MAINTENANCE = "maintenance", "maintenance"
    REINDUCTION = "reinduction", "IV re-induction"


class Route(models.TextChoices):
    IV = "iv", "intravenous"
    SC = "sc", "subcutaneous"


class Interval(models.TextChoices):
    Q4W = "q4w", "every 4 weeks"
    Q6W = "q6w", "every 6 weeks"
    Q8W = "q8w", "every 8 weeks"
    Q12W = "q12w", "every 12 weeks"
    OTHER = "other", "other"


class Immunomodulator(models.TextChoices):
    NONE = "none", "none"
    THIOPURINE = "thiopurine", "thiopurine"
    METHOTREXATE = "methotrexate", "methotrexate"
    OTHER = "other", "other"


class Visit(models.TextChoices):
    WEEK_0 = "week_0", "week 0 (re-induction)"
    WEEK_8 = "week_8", "week 8"
    WEEK_20 = "week_20", "week 20"
    WEEK_52 = "week_52", "week 52"


class NotDoneReason(models.TextChoices):
    MISSED = "missed", "visit missed"
    NOT_APPLICABLE = "not_applicable", "not applicable (treatment stopped)"
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", "lost to follow-up"
    UNKNOWN = "unknown", "unknown"


class FollowUpStatus(models.TextChoices):
    ONGOING = "ongoing", "still on ustekinumab"
    DISCONTINUED = "discontinued", "discontinued"


class DiscontinuationReason(models.TextChoices):
    NONRESPONSE = "nonresponse", "no response to re-induction"
    LOSS_OF_RESPONSE = "loss_of_response", "loss of response after initial response to re-induction"
    ADVERSE_EVENT = "adverse_event", "adverse event"
    PATIENT_WISH = "patient_wish", "patient wish"
    SURGERY = "surgery", "surgery"
    OTHER = "other", "other"


class AECategory(models.TextChoices):
    INFECTION = "infection", "infection"
    INFUSION_REACTION = "infusion_reaction", "infusion reaction"
    INJECTION_SITE_REACTION = "injection_site_reaction", "injection site reaction"
    SKIN = "skin", "skin"
    ARTHRALGIA = "arthralgia", "arthralgia"
    HEADACHE = "headache", "headache"
    MALIGNANCY = "malignancy", "malignancy"
    OTHER = "other", "other"


class Causality(models.TextChoices):
    UNRELATED = "unrelated", "unrelated"
    UNLIKELY = "unlikely", "unlikely"
    POSSIBLE = "possible", "possible"
    PROBABLE = "probable", "probable"
    DEFINITE = "definite", "definite"


class AEOutcome(models.TextChoices):
    RESOLVED = "resolved", "resolved"
    RESOLVING = "resolving", "resolving"
    ONGOING = "ongoing", "ongoing"
    SEQUELAE = "sequelae", "resolved with sequelae"
    FATAL = "fatal", "fatal"
    UNKNOWN = "unknown", "unknown"


class FormStatus(models.TextChoices):
    """REDCap-like record status of a form (SPEC section 3); 'not started' is the absence of a row."""

    INCOMPLETE = "incomplete", "incomplete"
    COMPLETE = "complete", "complete"
