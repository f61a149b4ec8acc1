"""The outcome dict as a readable plain-text table (`manage.py outcomes --format text`)."""

from __future__ import annotations

from reports.presentation import share, whole_percent

# Percentages are rounded as the dashboard and the PDF print them (reports/presentation.py: whole
# percentages, half up); this output is plain ASCII, so a missing value is "-", not a dash.


def _percent(n: int, total: int) -> str:
    return share(n, total) if total else "-"


def _ci(low, high) -> str:
    if low is None or high is None:
        return ""
    return f"  95% CI {whole_percent(low).removesuffix('%')}-{whole_percent(high)}"


def format_value(value: dict) -> str | None:
    """One cell: a proportion, a median with its quartiles, or a survival estimate."""
    if {"n", "N"} <= value.keys():
        share = _percent(value["n"], value["N"])
        return f"{value['n']}/{value['N']} ({share}){_ci(value.get('ci_low'), value.get('ci_high'))}"
    if {"median", "q1", "q3"} <= value.keys():
        if value["median"] is None:
            return f"- (N={value.get('N', 0)})"
        return f"{value['median']:.1f} ({value['q1']:.1f}-{value['q3']:.1f}), N={value.get('N')}"
    if "estimate" in value and "at_risk" in value:
        estimate = value["estimate"]
        shown = "-" if estimate is None else whole_percent(estimate)
        return f"{shown}{_ci(value.get('ci_low'), value.get('ci_high'))}  at risk {value['at_risk']}"
    return None


def _lines(value, indent: int) -> list[str]:
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        if key == "curve":
            lines.append(f"{pad}curve: {len(item)} steps")
        elif isinstance(item, dict):
            cell = format_value(item)
            if cell is not None:
                lines.append(f"{pad}{key.replace('_', ' ')}: {cell}")
            else:
                lines.append(f"{pad}{key.replace('_', ' ')}:")
                lines.extend(_lines(item, indent + 1))
        else:
            lines.append(f"{pad}{key.replace('_', ' ')}: {item}")
    return lines


def outcome_table(result: dict) -> str:
    return "\n".join(_lines(result, 0)) + "\n"
