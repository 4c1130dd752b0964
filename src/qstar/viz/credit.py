"""Token-level credit of one solution as a self-contained HTML page and a PNG heatmap.

Both draw a :class:`~qstar.critics.implicit.TokenCredit` on the same diverging scale: red for negative
reward (the policy likes the token less than its reference does), white for 0, blue for positive,
symmetric around 0 with the largest absolute token reward at the ends. Each line is one step (a token
sits on the step that holds its first character) with the step's summed reward beside it.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from qstar.critics.implicit import TokenCredit
from qstar.viz.figure import pyplot, save_png

NEGATIVE, ZERO, POSITIVE = (178, 24, 43), (247, 247, 247), (33, 102, 172)
"""the ends and middle of the diverging scale (matplotlib's RdBu)"""

_CSS = """
body { font: 14px/1.5 system-ui, sans-serif; margin: 1.5em; color: #222; }
.question { white-space: pre-wrap; background: #eef3fb; padding: .5em; margin-bottom: 1em; }
table { border-collapse: collapse; }
td { padding: .15em .5em; vertical-align: top; }
td.step { font-family: ui-monospace, monospace; white-space: pre; }
td.sum { text-align: right; font-family: ui-monospace, monospace; color: #444; }
.tok { border-right: 1px solid rgba(0,0,0,.08); }
.nl { color: #888; }
.special { color: #666; font-style: italic; }
.scale span { display: inline-block; width: 5em; text-align: center; font-size: 12px; }
"""


def colour(reward: float, limit: float) -> str:
    """The scale's CSS colour of ``reward`` for rewards in [-limit, limit]."""
    x = max(-1.0, min(1.0, reward / limit)) if limit > 0 else 0.0
    end = POSITIVE if x > 0 else NEGATIVE
    rgb = [round(z + abs(x) * (e - z)) for z, e in zip(ZERO, end, strict=True)]
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def scale_limit(credit: TokenCredit) -> float:
    return max((abs(r) for r in credit.rewards), default=0.0) or 1.0


def _token_html(credit: TokenCredit, i: int, limit: float) -> str:
    text, r = credit.tokens[i], credit.rewards[i]
    tip = (f"token {i} {text!r}: r = {r:+.4f} (log pi = {credit.logp_policy[i]:.3f}, "
           f"log pi_ref = {credit.logp_ref[i]:.3f})")
    if not text:  # EOS, or the second piece of a split character: show the token, not an empty box
        shown = f'<span class="special">{escape("⟨" + str(credit.token_ids[i]) + "⟩")}</span>'
    else:
        shown = escape(text).replace("\n", '<span class="nl">&#9166;</span>')
    return f'<span class="tok" style="background:{colour(r, limit)}" title="{escape(tip)}">{shown}</span>'


def credit_html(credit: TokenCredit, *, title: str = "implicit reward", question: str | None = None) -> str:
    """The page as a string: one ``<span class="tok">`` per token, one table row per step."""
    limit = scale_limit(credit)
    rows = []
    sums = credit.step_rewards()
    for s in range(len(credit.steps)):
        spans = "".join(_token_html(credit, i, limit) for i in range(len(credit.tokens)) if credit.step_of[i] == s)
        rows.append(f'<tr><td class="sum">{s}</td><td class="step">{spans}</td>'
                    f'<td class="sum" style="background:{colour(sums[s], limit)}">{sums[s]:+.4f}</td></tr>')
    scale = "".join(f'<span style="background:{colour(v, limit)}">{v:+.3g}</span>'
                    for v in (-limit, -limit / 2, 0.0, limit / 2, limit))
    q = f'<div class="question">{escape(question)}</div>' if question is not None else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>\n{q}"
        f"<p>r(token) = &beta; log &pi;(token|prefix) &minus; &beta; log &pi;<sub>ref</sub>(token|prefix), "
        f"&beta; = {credit.beta:g}; total {credit.total:+.4f} over {len(credit.tokens)} tokens. "
        "Hover a token for its value; a token sits on the step holding its first character.</p>\n"
        f'<p class="scale">{scale}</p>\n'
        f"<table><tr><th>step</th><th>tokens</th><th>step sum</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
        "</body></html>\n"
    )


def write_credit_html(credit: TokenCredit, out: str | Path, **kw) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(credit_html(credit, **kw), encoding="utf-8")
    return out


def write_credit_png(credit: TokenCredit, out: str | Path, *, title: str = "implicit reward", dpi: int = 120) -> Path:
    """A heatmap: one row per step, one cell per token (labelled with its text), the step sum on the right."""
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    ends = [tuple(c / 255 for c in x) for x in (NEGATIVE, ZERO, POSITIVE)]
    cmap = LinearSegmentedColormap.from_list("credit", ends).with_extremes(bad="white")
    rows = [[i for i in range(len(credit.tokens)) if credit.step_of[i] == s] for s in range(len(credit.steps))]
    width = max((len(r) for r in rows), default=0) or 1
    grid = np.full((len(rows), width), np.nan)
    for s, row in enumerate(rows):
        for j, i in enumerate(row):
            grid[s, j] = credit.rewards[i]
    limit = scale_limit(credit)
    fig_w = min(2.0 + 0.45 * width, 30)
    fig, ax = pyplot().subplots(figsize=(fig_w, 1.0 + 0.5 * len(rows)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for s, row in enumerate(rows):
        for j, i in enumerate(row):
            label = credit.tokens[i].replace("\n", "⏎") or f"<{credit.token_ids[i]}>"
            ax.text(j, s, label, ha="center", va="center", fontsize=8, family="monospace")
    sums = credit.step_rewards()
    ax.set_yticks(range(len(rows)), [f"step {s}" for s in range(len(rows))])
    ax.set_xticks([])
    right = ax.secondary_yaxis("right")
    right.set_ticks(range(len(rows)), labels=[f"{x:+.3f}" for x in sums])
    ax.set_title(f"{title} (beta={credit.beta:g}, total {credit.total:+.3f})", fontsize=10)
    # The colour bar leaves room (about 0.9 inch) for the step sums on the right.
    fig.colorbar(im, ax=ax, pad=0.9 / fig_w, label="beta log pi/pi_ref")
    return save_png(fig, out, dpi=dpi, bbox_inches="tight")
