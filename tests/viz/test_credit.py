"""The credit page and heatmap: escaped, one span per token, step sums, a real PNG; and the CLI command."""

import argparse
import json
import re

import pytest

from qstar.critics.implicit import TokenCredit
from qstar.viz.credit import NEGATIVE, POSITIVE, colour, credit_html, write_credit_html, write_credit_png
from tests.conftest import save_tiny_llama


def credit() -> TokenCredit:
    """Hand-made credit: 6 tokens over 2 steps; one token holds '<b>&', one crosses the step boundary."""
    return TokenCredit(
        solution="2<b>&1=3\n#### 3",
        steps=["2<b>&1=3\n", "#### 3"],
        beta=0.1,
        token_ids=[5, 6, 7, 8, 9, 2],
        tokens=["2", "<b>&", "1=", "3\n#", "### ", "3"],
        step_of=[0, 0, 0, 0, 1, 1],
        logp_policy=[-0.1, -0.2, -0.3, -0.4, -0.5, -0.6],
        logp_ref=[-0.2, -0.2, -0.1, -0.4, -0.5, -2.6],
        rewards=[0.01, 0.0, -0.02, 0.0, 0.0, 0.2],
    )


def test_page_escapes_text_and_has_one_span_per_token(tmp_path):
    c = credit()
    html = write_credit_html(c, tmp_path / "x" / "credit.html", title="t <i>", question="Q <script>x</script>").read_text()
    assert "<b>&" not in html and "&lt;b&gt;&amp;" in html
    assert "<script>" not in html and "Q &lt;script&gt;x&lt;/script&gt;" in html and "t &lt;i&gt;" in html
    assert html.count('class="tok"') == len(c.tokens)
    # each step's row holds its own tokens and its sum; a newline is drawn, not lost
    rows = re.findall(r"<tr><td class=\"sum\">(\d)</td><td class=\"step\">(.*?)</td>.*?>([+-]\d\.\d{4})</td></tr>", html)
    assert [(int(s), float(v)) for s, _, v in rows] == [(0, -0.01), (1, 0.2)]
    assert rows[0][1].count('class="tok"') == 4 and "&#9166;" in rows[0][1]
    # hovering shows the value
    assert 'title="token 5 &#x27;3&#x27;: r = +0.2000' in html
    assert "http://" not in html and "https://" not in html and " src=" not in html


def test_colours_are_a_symmetric_diverging_scale():
    assert colour(0.0, 1.0) == "rgb(247,247,247)"
    assert colour(-1.0, 1.0) == "rgb({},{},{})".format(*NEGATIVE)
    assert colour(5.0, 1.0) == "rgb({},{},{})".format(*POSITIVE)  # clipped
    html = credit_html(credit())
    # the largest |reward| (0.2, on token '3' of step 1) takes the scale's end colour
    assert 'style="background:rgb({},{},{})" title="token 5'.format(*POSITIVE) in html


def test_png_is_written(tmp_path):
    path = write_credit_png(credit(), tmp_path / "png" / "credit.png", title="p")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_credit_parser_and_missing_inputs_fail_clearly():
    from qstar.viz.credit_cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["credit", "--policy", "p", "--ref", "r", "--question", "q", "--out", "o"])
    from qstar.errors import QstarError

    with pytest.raises(QstarError, match="--solution"):
        a.func(a)


def test_credit_command_writes_html_png_and_json(tmp_path, char_model_dir, capsys):
    """The command end to end (in-process: a subprocess would spend ~10 s importing torch on busy cores),
    on two tiny models sharing the char tokenizer."""
    from qstar.models.tokenizer import build_char_tokenizer
    from qstar.viz.credit_cli import add_parser

    ref = save_tiny_llama(build_char_tokenizer(), tmp_path / "ref", seed=3)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    a = parser.parse_args(["credit", "--policy", str(char_model_dir), "--ref", str(ref),
                           "--question", "Ann has 5 pens. She buys 3. How many now?", "--solution", "5+3=8\n#### 8",
                           "--beta", "0.5", "--out", str(out)])
    a.func(a)
    printed = capsys.readouterr().out
    assert "step 0:" in printed and "step 1:" in printed and "total" in printed
    html = (out / "credit.html").read_text()
    assert html.count('class="tok"') == len("5+3=8\n#### 8")  # char tokenizer: one token per character
    assert (out / "credit.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "credit.json").read_text())
    assert record["total"] == pytest.approx(sum(record["step_rewards"]))
    assert any(r != 0 for r in record["rewards"])


def test_credit_command_fails_clearly_on_another_tokenizer(tmp_path, char_model_dir, bpe_model_dir):
    from qstar.errors import QstarError
    from qstar.viz.credit_cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["credit", "--policy", str(char_model_dir), "--ref", str(bpe_model_dir),
                           "--question", "q", "--solution", "1", "--out", str(tmp_path / "o")])
    with pytest.raises(QstarError, match="tokenizers differ"):
        a.func(a)
