"""Charts as inline SVG (pygal), for HTML that opens offline.

pygal links its tooltip script from a CDN by default and writes its home page into SVG
comments; both are turned off or stripped here, so the only URL left in a chart is the
SVG namespace. Chart ids are derived from the caller's name, so output is reproducible.
"""

from __future__ import annotations

import re

import pygal
from pygal.etree import etree
from pygal.style import Style

# pygal serialises with lxml when it is installed (python-docx brings it) and with the standard
# library otherwise, and the two write different SVG (lxml adds an xlink namespace): one
# serialiser, whatever else is installed, keeps the charts the same on every machine.
etree.to_etree()

FONT = "Noto Sans CJK SC, Noto Sans SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif"
BLUE, GREEN, AMBER, RED, GREY = "#2b6cb0", "#2f855a", "#b7791f", "#c53030", "#718096"
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# pygal writes its config into a script for its (unused, js=[]) tooltip code: not needed.
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _style(colors=(BLUE,)) -> Style:
    return Style(
        font_family=FONT, background="white", plot_background="white", foreground="#1a202c",
        foreground_strong="#1a202c", foreground_subtle="#a0aec0", colors=tuple(colors),
        title_font_size=16, label_font_size=13, major_label_font_size=13, value_font_size=12,
        value_label_font_size=12, tooltip_font_size=12, legend_font_size=13,
        # light, solid guides: pygal's black dashes ran through the printed values
        guide_stroke_color="#e2e8f0", major_guide_stroke_color="#cbd5e0",
        guide_stroke_dasharray="none", major_guide_stroke_dasharray="none",
    )


def _finish(chart, chart_id: str) -> str:
    svg = chart.render(is_unicode=True)
    svg = _SCRIPT.sub("", _COMMENT.sub("", svg))
    svg = _ID.sub(chart_id, svg)
    # Let the page size it: a fixed width would overflow a phone or an A4 page.
    return svg.replace("<svg ", '<svg role="img" preserveAspectRatio="xMinYMin meet" ', 1)


def _config(**extra):
    return dict(js=[], disable_xml_declaration=True, show_legend=False, print_values=True,
                print_values_position="top", truncate_label=-1, **extra)


def share_bars(labels: list[str], shares: list[float | None], chart_id: str, title: str = "") -> str:
    """Horizontal bars of percentages (0–100), one per label, e.g. category averages as a share of 满分."""
    height = 80 + 46 * max(len(labels), 1)
    # pygal sizes the label gutter for Latin glyphs; CJK ones are about twice as wide.
    gutter = 10 + 7 * max((len(str(label)) for label in labels), default=0)
    chart = pygal.HorizontalBar(style=_style(), width=760, height=height, range=(0, 100),
                                value_formatter=lambda v: f"{v:.1f}%", title=title or None,
                                **_config(margin=10, margin_left=gutter, spacing=8))
    # pygal's horizontal bars list the first label at the bottom; reverse so it reads top-down.
    chart.x_labels = list(reversed(labels))
    chart.add("得分率", [None if v is None else round(float(v), 1) for v in reversed(shares)])
    return _VALUE.sub(_beside_bar_end, _finish(chart, chart_id))


# A printed value of a horizontal bar, which pygal centres on the bar's end (half on the bar).
_VALUE = re.compile(r'<text text-anchor="middle" x="([0-9.]+)" y="([0-9.]+)" class="value">([0-9.]+)%</text>')


def _beside_bar_end(match: re.Match) -> str:
    """The value just past the bar's end, on a white halo that the guides do not cross; on a
    bar too long to leave room for it (90 % and more), just inside the end, in white."""
    x, y, value = float(match.group(1)), match.group(2), match.group(3)
    if float(value) >= 90:
        return (f'<text text-anchor="end" x="{x - 6:.2f}" y="{y}" class="value" '
                f'style="fill:#fff">{value}%</text>')
    return (f'<text text-anchor="start" x="{x + 6:.2f}" y="{y}" class="value" '
            f'style="paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round">{value}%</text>')


def count_bars(labels: list[str], counts: list[int], chart_id: str, colors=(GREEN, BLUE, AMBER, RED, GREY)) -> str:
    """Vertical bars of counts, one colour per bar (e.g. the grade distribution)."""
    chart = pygal.Bar(style=_style(colors[: max(len(labels), 1)]), width=520, height=260,
                      value_formatter=lambda v: f"{v:g}", **_config(margin=10, spacing=10))
    chart.x_labels = list(labels)
    top = max(counts) if counts else 0
    chart.range = (0, max(top, 1) * 1.15)
    # One series per bar gives each its colour; the others are None so the bars stay in place.
    for n, (label, count) in enumerate(zip(labels, counts)):
        chart.add(label, [count if m == n else None for m in range(len(labels))])
    return _finish(chart, chart_id)
