"""A search tree as one self-contained HTML page (inline CSS and JS; nothing is fetched).

Each node is a ``<details>`` element: its summary shows the option text, visits N, mean value Q,
the critic scores and, for a finished solution, its answer; a node's finished fast rollouts follow as
answer (ORM score), each with its whole solution on hover (MCTS's ORM vote counts them). The chosen path is
open and marked (class ``chosen``); every other subtree starts collapsed.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
details { margin-left: 1.2em; border-left: 1px solid #ccc; padding-left: .4em; }
summary { cursor: pointer; padding: .15em 0; }
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; background: #f6f6f6; padding: 0 .3em; }
.stat { color: #555; margin-left: .6em; font-size: 12px; }
.chosen > summary .text { background: #fff2b3; }
.mark { color: #b8860b; font-weight: bold; margin-right: .3em; }
.terminal { color: #1b7a1b; margin-left: .6em; font-size: 12px; }
.rollouts { color: #6a4c93; margin-left: .6em; font-size: 12px; }
.nl { color: #aaa; }
.question { white-space: pre-wrap; background: #eef3fb; padding: .5em; }
"""

_JS = """
function setAll(open) { document.querySelectorAll('details').forEach(d => d.open = open); }
function showChosen() { document.querySelectorAll('details').forEach(d => d.open = d.classList.contains('chosen')); }
"""


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _text(text: str) -> str:
    """Escaped option text with its line breaks shown (the step delimiter is usually one)."""
    if not text:
        return "(root)"
    return escape(text).replace("\n", '<span class="nl">&#9166;</span>\n').removesuffix("\n")


def _summary(node: dict, index: int, chosen: bool) -> str:
    visits = node.get("visits", 0)
    value = node.get("value_sum", 0.0) / visits if visits else None
    scores = " ".join(f"{escape(str(k))}={_fmt(v)}" for k, v in sorted(node.get("scores", {}).items()))
    parts = [
        '<span class="mark" title="chosen path">&#9733;</span>' if chosen else "",
        f'<span class="text">{_text(node.get("text", ""))}</span>',
        f'<span class="stat">#{index} N={visits} Q={_fmt(value)} {scores}</span>',
    ]
    if node.get("terminal"):
        parts.append(f'<span class="terminal">&#10003; answer: {escape(str(node.get("answer")))}</span>')
    if rollouts := node.get("rollouts"):
        shown = ", ".join(f'<span title="{escape("".join(r["steps"]))}">{escape(str(r["answer"]))} '
                          f'({_fmt(r["orm"])})</span>' for r in rollouts)
        parts.append(f'<span class="rollouts">&#8618; rollouts: {shown}</span>')
    return "".join(parts)


def _render(nodes: list[dict], chosen: set[int]) -> str:
    """Nested ``<details>``, built with an explicit stack so deep trees do not hit the recursion limit."""
    out: list[str] = []
    stack: list[int | str] = [0]
    while stack:
        item = stack.pop()
        if isinstance(item, str):  # a closing tag queued after a node's children
            out.append(item)
            continue
        on_path = item in chosen
        attrs = ' class="chosen" data-chosen="1" open' if on_path else ""
        out.append(f"<details{attrs}><summary>{_summary(nodes[item], item, on_path)}</summary>")
        stack.append("</details>")
        stack.extend(reversed(nodes[item].get("children", [])))
    return "\n".join(out)


def tree_html(tree_dict: dict, title: str = "") -> str:
    """The page for ``tree_dict`` (``Tree.to_dict()``, with its ``chosen`` node indices)."""
    nodes, chosen = tree_dict["nodes"], set(tree_dict.get("chosen", []))
    title = escape(title or "search tree")
    question = escape(tree_dict.get("question", ""))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<div class="question">{question}</div>
<p>{len(nodes)} nodes; &#9733; marks the chosen path.
<button onclick="setAll(true)">expand all</button> <button onclick="setAll(false)">collapse all</button>
<button onclick="showChosen()">chosen path only</button></p>
{_render(nodes, chosen)}
<script>{_JS}</script>
</body></html>
"""


def write_tree_html(tree_dict: dict, out_path: str | Path, title: str = "") -> Path:
    """Write the page for ``tree_dict`` to ``out_path``; returns the path."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tree_html(tree_dict, title), encoding="utf-8")
    return path


def load_tree_json(path: str | Path) -> dict:
    """A tree written by ``qstar search --save-tree``, with a one-line error for anything else."""
    from qstar.errors import QstarError
    from qstar.tasks.jsonl import read_json

    if not Path(path).is_file():
        raise QstarError(f"{path}: no such file")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise QstarError(f"{path}: not a search tree (expected an object with a 'nodes' list)")
    return data
