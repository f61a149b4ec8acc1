"""What `cohort` tells the rest of the project: the one hook through which data changes leave
this app. `cohort` never imports `reports` (docs/architecture.md); `reports` listens here.

The database itself records that outcomes are stale (triggers write recompute requests in the
saving transaction); this signal only says "someone may want to act on it now", e.g. wake a worker
once the transaction commits.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the writing transaction. `scopes`: the outcome scopes the change touches ("all" and
# a centre code), None when the writer cannot tell (an import, the demo seed), [] for none.
# `patients`: the ids of the patients whose records changed, None when the writer cannot tell. The
# writer has requested their automatic data queries in the database (models.DataCheckRequest);
# reports wakes a worker for the requests once the change commits (cohort/data_checks.py).
data_changed = Signal()


def outcomes_changed(centre_code: str | None = None, *, patients: list[int] | None = None) -> None:
    """Announce a change of study data: of one centre, or (None) of any centre; of these patients."""
    data_changed.send(sender=None, scopes=None if centre_code is None else ["all", centre_code], patients=patients)


def flag_confirmed(patient_id: int) -> None:
    """Announce that a flag of the patient was confirmed: no outcome changes, but the flag's
    automatic query has lost its cause."""
    data_changed.send(sender=None, scopes=[], patients=[patient_id])
