"""HTML → text cleaning of Stack Exchange bodies, and the small text normalisers."""

from __future__ import annotations

from ood_pl_bench.data.text import (clean_review_text, first_words, html_to_text,
                                    normalize_for_match, text_id)


def test_code_block_is_fenced_and_keeps_its_whitespace():
    html = ("<p>This is my code:</p>\n\n<pre><code>def f(x):\n    if x &lt; 2:\n"
            "        return x  # two   spaces\n</code></pre>\n<p>Why?</p>")
    assert html_to_text(html) == (
        "This is my code:\n\n```\ndef f(x):\n    if x < 2:\n        return x  # two   spaces\n```\n\nWhy?")


def test_inline_code_in_backticks_and_entities_decoded():
    html = "<p>Use <code>a &amp;&amp; b</code> &mdash; not &quot;a &amp; b&quot; or &#39;x&#39;.</p>"
    assert html_to_text(html) == "Use `a && b` \u2014 not \"a & b\" or 'x'."


def test_double_escaped_entities_stay_literal():
    # The dump stores HTML escaped inside an XML attribute; after XML unescaping, text that
    # showed a literal "&lt;" on the site is still "&amp;lt;" in the HTML.
    assert html_to_text("<p>write &amp;lt;br&amp;gt; in HTML</p>") == "write &lt;br&gt; in HTML"


def test_lists_nested_and_ordered():
    html = ("<ul><li>one</li><li><p>two</p><ul><li>two a</li><li>two b</li></ul></li></ul>"
            "<ol><li>first</li><li>second <em>step</em></li></ol>")
    assert html_to_text(html) == "- one\n- two\n  - two a\n  - two b\n\n1. first\n2. second step"


def test_links_keep_text_paragraphs_and_whitespace():
    html = ('<p>See   <a href="https://example.com/x">the\n docs</a>.</p>\n\n\n'
            "<p>Second\tparagraph<br>next line</p>")
    assert html_to_text(html) == "See the docs.\n\nSecond paragraph\nnext line"


def test_latex_kept_as_is():
    html = r"<p>Let $\frac{a}{b} = |\psi\rangle$ and</p><p>$$\sum_{i=1}^n x_i^2$$</p>"
    assert html_to_text(html) == "Let $\\frac{a}{b} = |\\psi\\rangle$ and\n\n$$\\sum_{i=1}^n x_i^2$$"


def test_blockquote_headings_images_tables_and_rules():
    html = ("<h2>Title</h2><blockquote><p>quoted</p><p>more</p></blockquote>"
            '<p><img src="a.png" alt="a plot"></p><hr><table><tr><th>k</th><th>v</th></tr>'
            "<tr><td>a</td><td>1</td></tr></table><script>x()</script>")
    assert html_to_text(html) == "Title\n\n> quoted\n>\n> more\n\n[image: a plot]\n\n---\n\nk | v\na | 1"


def test_empty_and_plain_inputs():
    assert html_to_text(None) == ""
    assert html_to_text("   \n") == ""
    assert html_to_text("just text, no tags") == "just text, no tags"
    assert html_to_text("<p></p><pre><code>\n</code></pre>") == ""


def test_review_helpers():
    assert clean_review_text("Great<br />value.<BR>  Would buy\n again") == "Great value. Would buy again"
    # Tokenised FDU-MTL text and the raw review normalise to the same string (dedup, overlap).
    assert normalize_for_match("i do n't like it , really") == normalize_for_match("I don't like it, really!")
    assert text_id("I don't like it") == text_id("i do n't like it") and len(text_id("x")) == 16
    assert first_words("  a b\nc d e ", 3) == "a b c"
