import json
import re

from qstar.search.tree import Node, Tree
from qstar.viz.tree_html import write_tree_html


def tree_dict() -> dict:
    tree = Tree(question="add 3 & 5 <b>")
    a = tree.add(0, Node("3+5=8\n", visits=3, value_sum=2.7, scores={"value": 0.9}))
    tree.add(0, Node("<script>alert(1)</script>\n", visits=1, value_sum=0.1, scores={"value": 0.1}))
    end = tree.add(a, Node("The answer is 8", visits=2, value_sum=1.8, terminal=True, answer="8"))
    tree.nodes[0].visits, tree.nodes[0].value_sum = 4, 2.8
    tree.nodes[a].rollouts = [{"steps": ["3+5=8\n", "The answer is <8>"], "answer": "<8>", "orm": 0.25}]
    tree.chosen = tree.path_to(end)
    return tree.to_dict()


def test_page_escapes_text_and_marks_the_chosen_path(tmp_path):
    path = write_tree_html(tree_dict(), tmp_path / "out" / "tree.html", title="p0 <mcts>")
    html = path.read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "add 3 &amp; 5 &lt;b&gt;" in html and "p0 &lt;mcts&gt;" in html
    assert html.count("<script>") == 1  # only the page's own inline script
    assert html.count('data-chosen="1"') == 3  # root, "3+5=8", the answer
    assert re.search(
        r'data-chosen="1" open><summary><span class="mark"[^>]*>&#9733;</span>'
        r'<span class="text">The answer is 8</span>',
        html,
    )
    assert "N=3 Q=0.900 value=0.900" in html and "answer: 8" in html
    assert html.count("<details") == html.count("</details>") == 4
    assert ('rollouts: <span title="3+5=8\nThe answer is &lt;8&gt;">&lt;8&gt; (0.250)</span>' in html)


def test_page_is_self_contained(tmp_path):
    html = write_tree_html(json.loads(json.dumps(tree_dict())), tmp_path / "t.html").read_text()
    assert "http://" not in html and "https://" not in html and " src=" not in html
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
