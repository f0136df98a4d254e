"""Property tests of the report's text handling (hypothesis)."""

import xml.dom.minidom

from hypothesis import given
from hypothesis import strategies as st
from sympy import Symbol

from bnproof.report import mathml
from bnproof.report._latex import _ESCAPES, _escape
from bnproof.report._markdown import _escape as md_escape

#: Characters that stress the escapers and the label parser.
ALPHABET = st.sampled_from(list("ab xyz019_^{}()[]|\\&<>$%#~,.+-=*`") + ["\u03b3", "\u2212"])


@given(st.text(ALPHABET, min_size=1, max_size=30))
def test_any_symbol_name_gives_well_formed_mathml(name):
    xml.dom.minidom.parseString(mathml(Symbol(name)))


@given(st.text(ALPHABET, max_size=40))
def test_latex_escape_leaves_no_special_character_raw(text):
    out = _escape(text)
    # Remove every escape sequence; nothing special may be left over.
    for sequence in sorted(set(_ESCAPES.values()) | {r"$-$", r"$\gamma$"}, key=len,
                           reverse=True):
        out = out.replace(sequence, "")
    assert not set(out) & set("\\{}$&#^_%~<>|"), out
    assert out.isascii()


@given(st.text(ALPHABET, max_size=40))
def test_markdown_escape_hides_every_markup_character(text):
    out = md_escape(text)
    stripped = out.replace("\\\\", "")
    for ch in "`*_[]<>|$":
        assert stripped.count(ch) == stripped.count("\\" + ch)
