"""HTML → readable plain text for Stack Exchange bodies, and small text normalisers.

Stack Exchange ``Body`` attributes hold HTML. Models see plain text, so we convert it while keeping
what carries meaning for an answer: code blocks become fenced blocks (whitespace kept exactly),
inline code is wrapped in backticks, list items become ``- `` (or ``1. ``) lines, quotes become
``> `` lines, links keep their text, paragraphs are separated by one blank line and LaTeX (``$…$``)
passes through untouched because it is plain text in the HTML.
"""

from __future__ import annotations

import hashlib
import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

# Elements that start a new block (paragraph) of text.
_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "header", "footer", "aside", "main", "nav", "figure",
    "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol", "li",
    "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "hr", "details", "summary",
    "address", "center",
})
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_NON_TEXT_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
# A line break inside inline text must survive whitespace collapsing; XML text can never hold NUL.
_BR = "\x00"
_SPACE_RE = re.compile(r"[^\S\x00]+")
_BR_SPACE_RE = re.compile(r" ?\x00 ?")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_NORM_RE = re.compile(r"[^a-z0-9]+")


def html_to_text(html: str | None) -> str:
    """Convert a Stack Exchange HTML body to clean plain text (see the module docstring)."""
    if not html or not html.strip():
        return ""
    soup = BeautifulSoup(html, "html.parser")
    text = "\n\n".join(b for b in _blocks(soup) if b.strip())
    return _BLANK_LINES_RE.sub("\n\n", text).strip()


def collapse_whitespace(text: str | None) -> str:
    """Collapse every whitespace run (newlines included) to one space and strip the ends."""
    return " ".join((text or "").split())


def clean_review_text(text: str | None) -> str:
    """Plain review text: ``<br>`` tags become spaces, whitespace is collapsed."""
    if not text:
        return ""
    # Amazon review texts carry literal <br /> tags; they separate sentences, nothing more.
    return collapse_whitespace(re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE))


def normalize_for_match(text: str | None) -> str:
    """Lower-case alphanumerics only, so tokenised (``do n't``) and raw (``don't``) copies match."""
    return _NORM_RE.sub("", (text or "").lower())


def text_id(text: str, length: int = 16) -> str:
    """A stable id of a text: the sha256 of its normalised form (first ``length`` hex digits)."""
    return hashlib.sha256(normalize_for_match(text).encode("utf-8")).hexdigest()[:length]


def first_words(text: str, n: int) -> str:
    """The first ``n`` whitespace-separated words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:n])


# --- rendering --------------------------------------------------------------------------------


def _collapse_inline(text: str) -> str:
    text = _SPACE_RE.sub(" ", text)
    text = _BR_SPACE_RE.sub("\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _has_block(tag: Tag) -> bool:
    return tag.find(_BLOCK_TAGS) is not None


def _blocks(node: Tag) -> list[str]:
    """Render the children of ``node`` as a list of blocks (paragraph strings)."""
    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = _collapse_inline("".join(inline))
        inline.clear()
        if text:
            blocks.append(text)

    for child in node.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, _NON_TEXT_STRINGS):
                inline.append(str(child))
            continue
        if not isinstance(child, Tag) or child.name in _SKIP_TAGS:
            continue
        if child.name in _BLOCK_TAGS:
            flush()
            blocks.extend(_block(child))
        elif _has_block(child):
            # An inline element wrapping blocks (<a><p>…</p></a>): its blocks stand on their own.
            flush()
            blocks.extend(_blocks(child))
        else:
            inline.append(_inline(child))
    flush()
    return blocks


def _inline(tag: Tag) -> str:
    """Render an inline element (no block descendants) to a string with _BR line breaks."""
    name = tag.name
    if name in _SKIP_TAGS:
        return ""
    if name == "br":
        return _BR
    if name == "img":
        alt = collapse_whitespace(tag.get("alt") or "")
        return f"[image: {alt}]" if alt else "[image]"
    if name == "code":
        code = collapse_whitespace(tag.get_text())
        return f"`{code}`" if code else ""
    parts: list[str] = []
    for child in tag.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, _NON_TEXT_STRINGS):
                parts.append(str(child))
        elif isinstance(child, Tag):
            parts.append(_inline(child))
    return "".join(parts)


def _block(tag: Tag) -> list[str]:
    """Render one block element to a list of blocks."""
    name = tag.name
    if name == "pre":
        code = tag.get_text().replace("\r\n", "\n").replace("\r", "\n").strip("\n").rstrip()
        return [f"```\n{code}\n```"] if code.strip() else []
    if name == "hr":
        return ["---"]
    if name in ("ul", "ol"):
        text = _list(tag)
        return [text] if text else []
    if name == "li":  # an item outside a list: still show it as one
        return [_item("- ", _blocks(tag))]
    if name == "blockquote":
        inner = "\n\n".join(_blocks(tag))
        if not inner:
            return []
        return ["\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))]
    if name == "table":
        rows = []
        for tr in tag.find_all("tr"):
            cells = [_collapse_inline(" ".join(_blocks(td)).replace("\n", " "))
                     for td in tr.find_all(["td", "th"], recursive=False)]
            if any(cells):
                rows.append(" | ".join(cells))
        return ["\n".join(rows)] if rows else []
    return _blocks(tag)


def _item(marker: str, blocks: list[str]) -> str:
    """One list item: the marker on the first line, continuation lines indented under it."""
    body = "\n".join(blocks)
    pad = " " * len(marker)
    lines = body.split("\n") if body else [""]
    return "\n".join([marker + lines[0]] + [(pad + line) if line else "" for line in lines[1:]])


def _list(tag: Tag) -> str:
    """A ``<ul>``/``<ol>``: one ``- `` (or ``N. ``) line per item, nested lists indented."""
    ordered = tag.name == "ol"
    try:
        number = int(tag.get("start", 1)) if ordered else 1
    except (TypeError, ValueError):
        number = 1
    items: list[str] = []
    for child in tag.children:
        if isinstance(child, NavigableString):
            text = collapse_whitespace(str(child)) if not isinstance(child, _NON_TEXT_STRINGS) else ""
            if text:  # stray text directly inside the list
                items.append(_item("- ", [text]))
            continue
        if not isinstance(child, Tag) or child.name in _SKIP_TAGS:
            continue
        if child.name in ("ul", "ol"):  # a nested list not wrapped in <li>: indent it
            nested = _list(child)
            if nested:
                items.append("\n".join("  " + line for line in nested.split("\n")))
            continue
        marker = f"{number}. " if ordered else "- "
        blocks = _blocks(child) if child.name == "li" else (
            _block(child) if child.name in _BLOCK_TAGS else [_collapse_inline(_inline(child))])
        blocks = [b for b in blocks if b]
        if blocks:
            items.append(_item(marker, blocks))
            number += 1
    return "\n".join(items)
