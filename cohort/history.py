"""The change history as people read it (issue 13, item 7): the casebook page, the history page and
the casebook PDF show an audit entry (cohort.audit.entries) by the form and visit it is on, each
change as the field's label with the old and new values as the form shows them (cohort.display),
and an automatic check's why in the reader's language.
"""

from __future__ import annotations

from django.apps import apps
from django.utils import formats, timezone
from django.utils.html import escape
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from cohort import crf, display, queries

# The casebook's monitoring rows (not CRF forms, so without a title in crf.FORMS).
MONITORING_NAMES = {
    "FlagConfirmation": gettext_lazy("Flag confirmation"),
    "Query": gettext_lazy("Query"),
    "QueryMessage": gettext_lazy("Query message"),
    "Verification": gettext_lazy("Source data verification"),
    "Signature": gettext_lazy("Signature"),
}
AUTOMATIC = "data_checks"  # the audit source of the automatic data queries (cohort/queries.py)
# Where a change came from (audit_context's source), as the PDF names it; a URL stays as it is.
SOURCES = {
    "web": pgettext_lazy("where a change came from", "form page"),
    "enrol": pgettext_lazy("where a change came from", "enrolment"),
    "delete": pgettext_lazy("where a change came from", "removal"),
    "flag": pgettext_lazy("where a change came from", "flag confirmation"),
    "query": pgettext_lazy("where a change came from", "query"),
    AUTOMATIC: pgettext_lazy("where a change came from", "automatic check"),
    "sdv": pgettext_lazy("where a change came from", "source data verification"),
    "sign": pgettext_lazy("where a change came from", "signature"),
    "lock": pgettext_lazy("where a change came from", "lock"),
    "unlock": pgettext_lazy("where a change came from", "unlock"),
    "admin": pgettext_lazy("where a change came from", "administration"),
    "import_cohort": pgettext_lazy("where a change came from", "import"),
    "api_import": pgettext_lazy("where a change came from", "import through the API"),
    "web_import": pgettext_lazy("where a change came from", "import in the browser"),
    "seed_demo": pgettext_lazy("where a change came from", "demo data"),
    "create_centre": pgettext_lazy("where a change came from", "new centre"),
}


def form_name(entry: dict) -> str:
    """The form an audit entry is on, as the casebook names it: an assessment with its visit
    ("Assessment week 8"), a monitoring row by what it is."""
    if entry["visit"] and entry["visit"] in crf.BY_KEY:
        return str(crf.BY_KEY[entry["visit"]].title)
    if entry["file"]:
        return str(crf.FILES[entry["file"]].title)
    return str(MONITORING_NAMES.get(entry["model"], entry["form"]))


def _changes(entry: dict) -> list[dict]:
    """What was entered first is what later changes start from, so a creation lists no values; a
    removal lists the values it removed. The row's keys (patient, visit) are in the form's name."""
    if entry["action"] == "insert":
        return []
    model = apps.get_model("cohort", entry["model"])
    hidden = crf.attnames(model, (*crf.KEYS, *crf.BOOKKEEPING))
    changes = []
    for name, (old, new) in sorted(entry["changes"].items()):
        if name in hidden or (entry["action"] != "update" and old in (None, "")):
            continue
        field = display.field_by_attname(model, name)
        label = name if field is None else str(field.verbose_name)
        changes.append({"label": label, "old": display.value_text(field, old), "new": display.value_text(field, new)})
    return changes


def _automatic_reasons(trail: list[dict]) -> dict[str, list[tuple]]:
    """An automatic check's messages in the reader's language, by query id: (time, text), oldest
    first. A query and its message are written together (the message a moment later), with the
    English text as the why of both."""
    said: dict[str, list[tuple]] = {}
    for entry in trail:
        if entry["model"] == "QueryMessage" and entry["action"] == "insert":
            fields = {name: new for name, (_old, new) in entry["changes"].items()}
            if fields.get("template"):
                text = queries.message_text(fields.get("text", ""), fields["template"], fields.get("values"))
                said.setdefault(str(fields.get("query_id")), []).append((entry["at"], text))
    return {query: sorted(texts) for query, texts in said.items()}


def _reason(entry: dict, said: dict[str, list[tuple]]) -> str:
    """The why of an entry; an automatic check's in the reader's language: a message's own, a
    query's that of the message written with it (the first at or after it)."""
    if entry["source"] != AUTOMATIC or entry["user"] or entry["model"] not in ("Query", "QueryMessage"):
        return entry["reason"]
    if entry["model"] == "QueryMessage":
        query_id = str(entry["changes"].get("query_id", (None, None))[1])
    else:
        query_id = entry["record"]
    return next((text for at, text in said.get(query_id, []) if at >= entry["at"]), entry["reason"])


def readable(trail: list[dict]) -> list[dict]:
    """The entries of an audit trail as people read them, in the same order."""
    said = _automatic_reasons(trail)
    return [
        {
            **entry,
            "form": form_name(entry),
            "changes": _changes(entry),
            "user": _("automatic check") if entry["source"] == AUTOMATIC and not entry["user"] else entry["user"],
            "reason": _reason(entry, said),
            "source": str(SOURCES.get(entry["source"], entry["source"])),
        }
        for entry in trail
    ]


def list_html(entries: list[dict]) -> SafeString:
    """The readable entries as the casebook and the history page list them: the HTML the template
    made (each value escaped, each time in the current time zone in the language's date and time
    style, as `|date:"DATETIME_FORMAT"`), made here: the template's nodes cost about 60 µs an
    entry, and the history page lists every one. Times repeat (a save writes a few events at once):
    each is formatted once."""
    if not entries:
        return SafeString(
            '\n<ul class="list-group small history">\n\n'
            f'  <li class="list-group-item text-muted">{escape(_("No changes recorded."))}</li>\n\n</ul>\n'
        )
    actions = {"insert": escape(_("created")), "update": escape(_("changed"))}
    removed, unknown, reason_word = escape(_("removed")), escape(_("unknown user")), escape(_("reason"))
    times: dict = {}
    parts = ['\n<ul class="list-group small history">\n']
    for entry in entries:
        at = entry["at"]
        if at not in times:
            times[at] = escape(formats.date_format(timezone.localtime(at), "DATETIME_FORMAT"))
        user = escape(entry["user"]) if entry["user"] else unknown
        reason = f" · {reason_word}: <em>{escape(entry['reason'])}</em>" if entry["reason"] else ""
        changes = ""
        if entry["changes"]:
            items = "".join(
                f"<li>{escape(change['label'])}: {escape(change['old'])} → {escape(change['new'])}</li>"
                for change in entry["changes"]
            )
            changes = f'<ul class="mb-0 ps-3">{items}</ul>'
        parts.append(
            '\n  <li class="list-group-item">'
            '\n    <div class="d-flex justify-content-between gap-2">'
            f"\n      <strong>{escape(entry['form'])} {actions.get(entry['action'], removed)}</strong>"
            f'\n      <span class="text-muted text-nowrap">{times[at]}</span>'
            "\n    </div>"
            f'\n    <div class="text-muted">{user}{reason}</div>'
            f"\n    {changes}"
            "\n  </li>\n"
        )
    parts.append("\n</ul>\n")
    return SafeString("".join(parts))
