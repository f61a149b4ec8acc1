"""Figures of the outcomes as inline SVG text: the dashboard embeds them, WeasyPrint prints them.

Pure functions over the outcome dict (SPEC section 5); plain SVG elements with presentation
attributes only (no CSS classes, scripts or external fonts), so the same markup renders in a browser
and in a PDF.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

# SPEC section 3: the nominal study days of weeks 0, 8, 20 and 52.
WEEK_TICKS = ((0, 0), (8, 56), (20, 140), (52, 364))

LINE = "#0d6efd"
BAND = "#0d6efd"
INK = "#212529"
MUTED = "#6c757d"
FONT = "sans-serif"


def step_points(curve: Sequence[dict], *, max_day: int | None = None) -> list[tuple[float, float]]:
    """Vertices (day, S) of the right-continuous step function, drawn up to `max_day`.

    The estimate is held until the day it drops: (0, 1), (d1, 1), (d1, S1), (d2, S1), (d2, S2), ...
    with a vertex only where it changes, then held to the last step's day (S is not known after the
    last observed time) or to `max_day` when the curve goes on beyond it."""
    points: list[tuple[float, float]] = []
    end = None
    for step in curve:
        day, estimate = step["day"], step["estimate"]
        if estimate is None:
            break
        if max_day is not None and day > max_day:
            end = max_day
            break
        if not points:
            points.append((day, estimate))
        elif estimate != points[-1][1]:
            points += [(day, points[-1][1]), (day, estimate)]
        end = day
    if points and end is not None and end > points[-1][0]:
        points.append((end, points[-1][1]))
    return points


def band_points(curve: Sequence[dict], *, max_day: int | None = None) -> list[tuple[float, float]]:
    """Outline (day, S) of the 95% CI band as one closed step polygon: the upper bound forward, the
    lower bound back. An undefined bound (null where S is 1 or 0) is drawn at the estimate."""

    def bounded(key: str) -> list[dict]:
        steps = []
        for step in curve:
            if step["estimate"] is None:
                break
            value = step[key] if step[key] is not None else step["estimate"]
            steps.append({"day": step["day"], "estimate": value})
        return steps

    upper = step_points(bounded("ci_high"), max_day=max_day)
    lower = step_points(bounded("ci_low"), max_day=max_day)
    return upper + lower[::-1]


def censor_points(curve: Sequence[dict], *, max_day: int | None = None) -> list[tuple[float, float]]:
    """One mark per distinct time with censoring, at the estimate after that day's events (as R's
    plot.survfit marks it); several patients censored on one day share the mark."""
    return [
        (step["day"], step["estimate"])
        for step in curve
        if step.get("censored") and step["estimate"] is not None and (max_day is None or step["day"] <= max_day)
    ]


def at_risk_at(curve: Sequence[dict], day: int) -> int:
    """Patients whose time is >= day (SPEC section 5's number at risk).

    Computed from the curve: a step's at_risk counts the patients with time >= its day, and nobody's
    time falls between two steps, so the number at `day` is the at_risk of the first step on or after
    it, and 0 after the last step. (Equal to counting the times themselves, which the curve does not
    carry.)"""
    return next((step["at_risk"] for step in curve if step["day"] >= day), 0)


def _path(points: Sequence[tuple[float, float]], *, close: bool = False) -> str:
    parts = [f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points)]
    return " ".join(parts) + (" Z" if close else "")


def _text(x: float, y: float, content: str, *, anchor: str = "middle", size: int = 12, fill: str = INK, **extra) -> str:
    attributes = "".join(f" {name.replace('_', '-')}={quoteattr(str(value))}" for name, value in extra.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="{FONT}" font-size="{size}"'
        f' fill="{fill}"{attributes}>{escape(content)}</text>'
    )


def km_svg(
    curve: Sequence[dict],
    *,
    width: int = 640,
    height: int = 360,
    max_day: int = 364,
    x_label: str = "Weeks since re-induction",
    y_label: str = "On ustekinumab (%)",
    at_risk_label: str = "At risk",
    title: str = "Kaplan-Meier estimate of drug survival",
) -> str:
    """The Kaplan-Meier curve as an SVG document fragment (an <svg> element).

    The step curve, its 95% CI band as a shaded step polygon, + marks at censoring times, axes with
    ticks at weeks 0, 8, 20 and 52 (days 0, 56, 140, 364) and 0-100%, and the numbers at risk at those
    days in a row under the axis (see `at_risk_at`). Labels are parameters so callers can translate
    them. The x axis runs from day 0 to `max_day`; the curve is cut there.
    """
    left, right, top = 58, 18, 14
    bottom = 80  # tick labels, the axis title, the numbers-at-risk title and row
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(day: float) -> float:
        return left + plot_w * day / max_day

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    def scaled(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x(day), y(value)) for day, value in points]

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label={quoteattr(title)} class="km-curve">',
        f"<title>{escape(title)}</title>",
    ]
    # Grid and y axis: 0-100% every 25%.
    for percent in range(0, 101, 25):
        gy = y(percent / 100)
        parts.append(
            f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" stroke="#dee2e6" stroke-width="1"/>'
        )
        parts.append(_text(left - 6, gy + 4, f"{percent}%", anchor="end", fill=MUTED))
    parts.append(_text(14, top + plot_h / 2, y_label, transform=f"rotate(-90 14 {top + plot_h / 2:.1f})"))

    band = band_points(curve, max_day=max_day)
    if band:
        parts.append(
            f'<path d="{_path(scaled(band), close=True)}" fill="{BAND}" fill-opacity="0.15" stroke="none"'
            ' data-role="ci-band"/>'
        )
    line = step_points(curve, max_day=max_day)
    if line:
        parts.append(
            f'<path d="{_path(scaled(line))}" fill="none" stroke="{LINE}" stroke-width="2" data-role="survival"/>'
        )
    # Every + mark in one path (its days in data-days): an element per mark (some 360 at 100,000
    # patients) cost WeasyPrint a third of the cohort report's layout, for the same drawing.
    censored = censor_points(curve, max_day=max_day)
    if censored:
        marks = " ".join(
            f"M{x(day) - 4:.1f},{y(value):.1f} H{x(day) + 4:.1f} M{x(day):.1f},{y(value) - 4:.1f} V{y(value) + 4:.1f}"
            for day, value in censored
        )
        days = " ".join(str(day) for day, _value in censored)
        parts.append(
            f'<path d="{marks}" fill="none" stroke="{INK}" stroke-width="1.3" data-role="censor" data-days="{days}"/>'
        )

    # X axis with week ticks, then the numbers at risk under it.
    axis_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="{INK}"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="{INK}"/>')
    for week, day in WEEK_TICKS:
        tx = x(day)
        parts.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 5}" stroke="{INK}"/>')
        parts.append(_text(tx, axis_y + 17, str(week)))
    parts.append(_text(left + plot_w / 2, axis_y + 33, x_label))
    # The title on a line of its own, so a longer translation never runs into the first number.
    risk_y = axis_y + 70
    parts.append(_text(4, risk_y - 16, at_risk_label, anchor="start", fill=MUTED, font_weight="bold"))
    for week, day in WEEK_TICKS:
        parts.append(_text(x(day), risk_y, str(at_risk_at(curve, day)), data_role="at-risk", data_week=week))
    parts.append("</svg>")
    return "\n".join(parts)
