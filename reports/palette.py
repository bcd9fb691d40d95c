"""One colour, marker and line style per estimator, the same in every figure of every report.

The style is a function of the estimator's name alone (no model code is imported): each built-in
estimator belongs to a family, drawn in that family's hue (score function: reds, pathwise: blues,
antithetic: greens, relaxations: purples, learned or analytic control variates: browns), each
member with its own shade and marker. A name with options (``gumbel-softmax(temperature=0.5)``)
takes its estimator's hue and marker in a shade chosen from the options; a library adapter's
(``storchastic:disarm``) takes the style of the estimator it wraps, dashed; any other name (a
plugin) a colour and marker chosen from a hash of the name, so that it too keeps them across reports.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass

#: family -> (members in order, their colours); a member's marker is MARKERS[its position]
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "score function": (("reinforce", "reinforce-loo", "reinforce-ema", "vimco", "sum-and-sample", "unordered-set"),
                       ("#d62728", "#ff7f0e", "#e377c2", "#b2182b", "#f4a582", "#c51b7d")),
    "pathwise": (("reparameterization", "iwae", "dreg", "measure-valued"),
                 ("#1f77b4", "#17becf", "#4393c3", "#08306b")),
    "antithetic": (("arm", "disarm", "arms", "stick-breaking-disarm", "local-disarm"),
                   ("#2ca02c", "#006d2c", "#74c476", "#bcbd22", "#41ab5d")),
    "relaxation": (("gumbel-softmax", "straight-through", "gumbel-rao", "gst", "reinmax"),
                   ("#9467bd", "#6a3d9a", "#c2a5cf", "#762a83", "#b15928")),
    "control variate": (("rebar", "relax", "double-cv", "reinforce-delta-cv", "reinforce-optimal"),
                        ("#8c564b", "#a6761d", "#543005", "#bf812d", "#7f7f7f")),
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
EXACT = "exact"


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str
    linestyle: str = "-"
    family: str = "other"

    def line(self) -> dict[str, str]:
        """Keyword arguments of matplotlib's ``plot`` for this estimator."""
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle}


_KNOWN = {name: Style(colour, MARKERS[i], "-", family)
          for family, (names, colours) in FAMILIES.items() for i, (name, colour) in enumerate(zip(names, colours, strict=True))}
_KNOWN[EXACT] = Style("#000000", "*", "-", "exact")


def _shade(colour: str, key: str) -> str:
    """``colour`` made lighter or darker by an amount chosen from ``key`` (an estimator's options)."""
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    light = min(0.85, max(0.15, light + ((zlib.crc32(key.encode()) % 7) - 3) * 0.09))
    return "#" + "".join(f"{round(v * 255):02x}" for v in colorsys.hls_to_rgb(h, light, s))


def style(label: str) -> Style:
    """The style of the estimator labelled ``label`` (a name, a name with its options in parentheses,
    or a library adapter's ``library:name``)."""
    name, _, options = label.partition("(")
    name = name.strip()
    library, _, inner = name.rpartition(":")
    base = _KNOWN.get(inner if library else name)
    if base is None:
        h = zlib.crc32(name.encode())
        r, g, b = colorsys.hls_to_rgb((h % 360) / 360, 0.35 + (h >> 9) % 3 * 0.12, 0.55)
        base = Style("#" + "".join(f"{round(v * 255):02x}" for v in (r, g, b)), MARKERS[(h >> 4) % len(MARKERS)])
    if options:
        base = Style(_shade(base.colour, options), base.marker, base.linestyle, base.family)
    if library:
        base = Style(base.colour, base.marker, "--", base.family)
    return base
