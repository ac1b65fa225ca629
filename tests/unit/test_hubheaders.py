"""Xet signals are stripped and pagination links rewritten."""

from __future__ import annotations

from hubmirror.core.hubheaders import (
    is_xet_header,
    next_page_url,
    strip_xet_json,
)
from hubmirror.web.forward import rewrite_links


def test_xet_fields_are_removed_at_any_depth() -> None:
    document = [{"path": "a", "xetHash": "x", "lfs": {"oid": "o", "xetHash": "y"}}]
    assert strip_xet_json(document) == [{"path": "a", "lfs": {"oid": "o"}}]


def test_xet_link_rels_are_dropped_and_others_kept() -> None:
    value = (
        '<https://hub/api/x/xet-read-token/c>; rel="xet-auth", '
        '<https://cas/r>; rel="xet-reconstruction-info", <https://hub/next>; rel="next"'
    )
    assert (
        rewrite_links(value, ["https://other", "https://hub"], "http://m")
        == '<http://m/next>; rel="next"'
    )


def test_next_page_url() -> None:
    assert next_page_url('<https://h/api/t?cursor=abc>; rel="next"') == "https://h/api/t?cursor=abc"
    assert next_page_url(None) is None


def test_forwarded_links_point_at_the_mirror() -> None:
    value = '<https://huggingface.co/api/models?cursor=x>; rel="next"'
    rewritten = rewrite_links(value, ["https://huggingface.co"], "http://mirror:8090")
    assert rewritten == '<http://mirror:8090/api/models?cursor=x>; rel="next"'


def test_every_xet_header_is_recognised() -> None:
    for name in ("X-Xet-Hash", "x-xet-refresh-route", "X-Xet-Cas-Url", "X-Xet-Anything-New"):
        assert is_xet_header(name)
    assert not is_xet_header("X-Repo-Commit")
