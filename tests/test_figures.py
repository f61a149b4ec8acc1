"""The Kaplan-Meier figure (reports/figures.py): plain SVG that parses as XML, the step curve's
vertices, the CI band, censor marks and the numbers at risk at weeks 0, 8, 20 and 52."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from reports import figures

SVG = "{http://www.w3.org/2000/svg}"


def step(day, estimate, at_risk, events, censored, low=None, high=None) -> dict:
    return {
        "day": day,
        "estimate": estimate,
        "ci_low": low,
        "ci_high": high,
        "at_risk": at_risk,
        "events": events,
        "censored": censored,
    }


# 5 patients: an event at day 30, one censored at 60, an event and a censoring at 100, one still
# on the drug (censored) at day 200.
TINY = [
    step(0, 1.0, 5, 0, 0),
    step(30, 0.8, 5, 1, 0, 0.204, 0.969),
    step(60, 0.8, 4, 0, 1, 0.204, 0.969),
    step(100, 0.4, 3, 1, 1, 0.052, 0.753),
    step(200, 0.4, 1, 0, 1, 0.052, 0.753),
]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_role(root: ET.Element, role: str, tag: str = "path") -> list[ET.Element]:
    return [element for element in root.iter(f"{SVG}{tag}") if element.get("data-role") == role]


def coordinates(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", d)]


def test_it_is_plain_svg_that_parses_as_xml():
    root = parse(figures.km_svg(TINY, width=600, height=320))

    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("600", "320", "0 0 600 320")
    tags = {element.tag.removeprefix(SVG) for element in root.iter()}
    assert tags <= {"svg", "title", "path", "line", "text"}  # nothing WeasyPrint would not draw
    assert "script" not in tags and "style" not in tags
    assert all(text.get("font-family") == "sans-serif" for text in root.iter(f"{SVG}text"))


def test_the_step_curve_holds_each_estimate_until_the_next_time():
    # A vertex where S drops (days 30 and 100), none where only censoring happens (day 60), and the
    # last estimate held to the last observed time (day 200).
    assert figures.step_points(TINY) == [(0, 1.0), (30, 1.0), (30, 0.8), (100, 0.8), (100, 0.4), (200, 0.4)]
    # Cut at the axis' end: the estimate is held to max_day, nothing after it.
    assert figures.step_points(TINY, max_day=80) == [(0, 1.0), (30, 1.0), (30, 0.8), (80, 0.8)]


def test_the_drawn_path_has_the_step_vertices_in_plot_coordinates():
    root = parse(figures.km_svg(TINY, width=600, height=320, max_day=364))
    (line,) = by_role(root, "survival")
    points = coordinates(line.get("d"))

    assert len(points) == len(figures.step_points(TINY))
    xs = sorted({x for x, _y in points})
    # Days 0, 30, 100, 200 map linearly onto the x axis.
    scale = (xs[1] - xs[0]) / 30
    assert [round((x - xs[0]) / scale) for x in xs] == [0, 30, 100, 200]
    ys = [y for _x, y in points]
    top, bottom_40 = ys[0], ys[-1]  # S = 1.0 and S = 0.4
    assert ys[2] == round(top + (bottom_40 - top) * (1 - 0.8) / (1 - 0.4), 1)  # S = 0.8 in between
    assert ys == sorted(ys)  # a survival curve never goes up


def test_the_confidence_band_is_a_closed_step_polygon():
    root = parse(figures.km_svg(TINY))
    (band,) = by_role(root, "ci-band")

    assert band.get("d").endswith("Z") and band.get("fill-opacity")
    # Upper bound forward, lower bound back; the undefined bound at S = 1 is drawn at the estimate.
    outline = figures.band_points(TINY)
    assert outline[:3] == [(0, 1.0), (30, 1.0), (30, 0.969)]
    assert outline[-3:] == [(30, 0.204), (30, 1.0), (0, 1.0)]
    assert len(coordinates(band.get("d"))) == len(outline)


def test_censor_marks_are_drawn_once_per_time_with_censoring():
    root = parse(figures.km_svg(TINY))
    (marks,) = by_role(root, "censor")  # one path of + marks

    # Days 60, 100 (an event and a censoring: the mark sits after the drop) and 200; none at 0 or 30.
    assert marks.get("data-days").split() == ["60", "100", "200"]
    assert figures.censor_points(TINY) == [(60, 0.8), (100, 0.4), (200, 0.4)]
    # Each mark a horizontal and a vertical stroke of 8 crossing at its (day, estimate): left to
    # right by day, lower where the estimate is lower.
    number = r"([\d.]+)"
    strokes = re.findall(rf"M{number},{number} H{number} M{number},{number} V{number}", marks.get("d"))
    assert len(strokes) == sum(1 for s in TINY if s["censored"])
    crossings = []
    for left, middle, right, centre, top, bottom in (tuple(map(float, stroke)) for stroke in strokes):
        assert (right - left, bottom - top) == pytest.approx((8, 8))
        assert (centre, middle) == pytest.approx((left + 4, top + 4))
        crossings.append((centre, middle))
    assert crossings[0][0] < crossings[1][0] < crossings[2][0]
    assert crossings[0][1] < crossings[1][1] == crossings[2][1]


def test_the_numbers_at_risk_are_those_with_time_on_or_after_each_week():
    root = parse(figures.km_svg(TINY))
    cells = by_role(root, "at-risk", "text")

    # Day 0: all 5; day 56: time >= 56 is 4 (the first step on or after it, day 60); day 140: 1
    # (the day-200 patient); day 364: nobody.
    assert [(cell.get("data-week"), cell.text) for cell in cells] == [("0", "5"), ("8", "4"), ("20", "1"), ("52", "0")]
    times = [30, 60, 100, 100, 200]
    for day in (0, 56, 140, 364, 30, 31, 100, 201):
        assert figures.at_risk_at(TINY, day) == sum(1 for t in times if t >= day), day


def test_the_axes_have_week_ticks_and_percentages():
    root = parse(figures.km_svg(TINY, x_label="Weken", y_label="Op middel (%)", at_risk_label="At risk"))
    texts = [text.text for text in root.iter(f"{SVG}text")]

    for label in ("0", "8", "20", "52", "0%", "25%", "50%", "75%", "100%", "Weken", "Op middel (%)", "At risk"):
        assert label in texts


def test_labels_are_escaped():
    svg = figures.km_svg(TINY, x_label="Weeks <since> & more", title='"KM" <curve>')

    root = parse(svg)
    assert "Weeks <since> & more" in [text.text for text in root.iter(f"{SVG}text")]
    assert root.get("aria-label") == '"KM" <curve>'


def test_a_curve_beyond_week_52_is_cut_at_the_axis_end():
    curve = [*TINY[:2], step(400, 0.5, 2, 1, 1, 0.1, 0.8)]
    root = parse(figures.km_svg(curve, max_day=364))

    assert figures.step_points(curve, max_day=364)[-1] == (364, 0.8)
    assert by_role(root, "censor") == []
    right_edge = max(x for x, _y in coordinates(by_role(root, "survival")[0].get("d")))
    axis_end = max(float(line.get("x2")) for line in root.iter(f"{SVG}line"))
    assert right_edge == axis_end


def test_an_empty_curve_still_draws_the_axes():
    root = parse(figures.km_svg([]))

    assert by_role(root, "survival") == [] and by_role(root, "ci-band") == []
    assert [cell.text for cell in by_role(root, "at-risk", "text")] == ["0", "0", "0", "0"]
