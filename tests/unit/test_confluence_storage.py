"""The confluence_storage extractor: what a reader sees of storage-format XHTML."""

from __future__ import annotations

import pytest

from connectors.extract import FORMATS, Limits, TooLarge, extract_bytes
from connectors.extract.confluence import extract_storage

pytestmark = pytest.mark.unit

SITE = "https://acme.atlassian.net"


def text_of(xhtml: str, base: str = SITE) -> str:
    _, sections = extract_storage(xhtml, "page", base)
    return "\n".join(s.text for s in sections)


def test_headings_become_the_section_path() -> None:
    title, sections = extract_storage("<h1>Ops</h1><p>a</p><h2>Pager</h2><p>b</p>", "p", SITE)
    assert title == "Ops"
    assert [(s.headings, s.text) for s in sections] == [(("Ops",), "a"),
                                                         (("Ops", "Pager"), "b")]


def test_tables_keep_rows_and_cells() -> None:
    got = text_of("<table><tbody><tr><th>Step</th><th>Who</th></tr>"
                  "<tr><td><p>Promote</p></td><td>DBA</td></tr></tbody></table>")
    assert "Step | Who" in got and "Promote | DBA" in got


def test_code_blocks_keep_their_lines_and_drop_the_parameters() -> None:
    got = text_of('<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash'
                  '</ac:parameter><ac:plain-text-body><![CDATA[make deploy\nmake verify]]>'
                  '</ac:plain-text-body></ac:structured-macro>')
    assert "make deploy\nmake verify" in got and "bash" not in got


def test_macros_keep_their_visible_text_only() -> None:
    got = text_of('<ac:structured-macro ac:name="info"><ac:parameter ac:name="title">Careful'
                  '</ac:parameter><ac:parameter ac:name="icon">true</ac:parameter>'
                  '<ac:rich-text-body><p>Backups first.</p></ac:rich-text-body>'
                  '</ac:structured-macro><ac:image><ri:attachment ri:filename="x.png"/>'
                  '</ac:image>')
    assert "Careful" in got and "Backups first." in got
    assert "true" not in got and "x.png" not in got


def test_links_are_made_absolute_and_page_links_keep_their_text() -> None:
    got = text_of('<p>See <a href="/wiki/spaces/ENG/pages/1">the runbook</a>, '
                  '<a href="https://example.org/x">x</a> and '
                  '<ac:link><ri:page ri:content-title="Escalation"/></ac:link>.</p>')
    assert "the runbook (https://acme.atlassian.net/wiki/spaces/ENG/pages/1)" in got
    assert "x (https://example.org/x)" in got and "Escalation" in got


def test_registered_as_a_shared_format_and_limited() -> None:
    assert ".confluence_storage" in FORMATS
    got = extract_bytes(b"<h1>T</h1><p>body</p>", "page", fmt="confluence_storage")
    assert got.title == "T" and got.sections[0].text == "body"
    with pytest.raises(TooLarge):
        extract_storage("<p>" + "x" * 200 + "</p>", "big", SITE, Limits(max_bytes=100))


def test_malformed_markup_still_yields_its_text() -> None:
    assert "unclosed" in text_of("<p>unclosed <b>bold <ac:structured-macro>")
