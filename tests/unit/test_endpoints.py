"""Endpoint URLs: normalised, listed from the environment, matched and moved."""

from __future__ import annotations

import pytest

from hubmirror.core.endpoints import (
    HUB_ENDPOINT,
    EndpointError,
    default_endpoints,
    endpoint_of,
    normalize_endpoint,
    rebase,
    unique_endpoints,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://mirror:8090", "http://mirror:8090"),
        ("HTTP://Mirror:8090/", "http://mirror:8090"),
        ("  https://huggingface.co:443// ", "https://huggingface.co"),
        ("http://mirror:80/hub/", "http://mirror/hub"),
        ("http://[::1]:8090", "http://[::1]:8090"),
        ("https://Example.org/Hub", "https://example.org/Hub"),
    ],
)
def test_endpoints_are_normalised(text: str, expected: str) -> None:
    assert normalize_endpoint(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mirror:8090",
        "ftp://mirror",
        "http://",
        "http://user:secret@mirror",
        "http://mirror/?x=1",
        "http://mirror/#top",
        "http://mirror:99999",
    ],
)
def test_what_is_not_a_base_url_is_refused(text: str) -> None:
    with pytest.raises(EndpointError):
        normalize_endpoint(text)


def test_lists_split_commas_drop_blanks_and_repeats_and_keep_the_order() -> None:
    assert unique_endpoints(["http://b:1, http://a:1,,", "http://B:1/", "http://c:1"]) == (
        "http://b:1",
        "http://a:1",
        "http://c:1",
    )


def test_the_environment_list_comes_first_then_the_hub_once() -> None:
    assert default_endpoints({}) == (HUB_ENDPOINT,)
    assert default_endpoints({"HUBMIRROR_ENDPOINTS": "http://a:1,http://b:1"}) == (
        "http://a:1",
        "http://b:1",
        HUB_ENDPOINT,
    )
    assert default_endpoints({"HUBMIRROR_ENDPOINTS": f"{HUB_ENDPOINT}/,http://a:1"}) == (
        HUB_ENDPOINT,
        "http://a:1",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a:1/org/name/resolve/main/x?y=1", "http://a:1"),
        ("HTTP://A:1/api/models/x", "http://a:1"),
        ("http://a:1", "http://a:1"),
        ("http://b/hub/api/models/x", "http://b/hub"),
        ("http://b:80/hub", "http://b/hub"),
        ("http://b/hubx/api", None),
        ("http://b/api", None),
        ("https://a:1/x", None),
        ("http://cdn.example/x", None),
        ("https://huggingface.co/api/models/gpt2", HUB_ENDPOINT),
        ("https://huggingface.co:443/gpt2", HUB_ENDPOINT),
    ],
)
def test_a_url_belongs_to_the_endpoint_it_lives_under(url: str, expected: str | None) -> None:
    assert endpoint_of(url, ["http://a:1", "http://b/hub", HUB_ENDPOINT]) == expected


def test_the_longest_endpoint_wins() -> None:
    assert endpoint_of("http://a/x/y/z", ["http://a", "http://a/x"]) == "http://a/x"


def test_rebase_keeps_path_and_query_exactly() -> None:
    url = "https://huggingface.co/api/models/org/name/tree/main%2Fsub?recursive=true&cursor=a%3D"
    assert rebase(url, HUB_ENDPOINT, "http://mirror:8090/hub") == (
        "http://mirror:8090/hub/api/models/org/name/tree/main%2Fsub?recursive=true&cursor=a%3D"
    )
    assert rebase("http://b/hub", "http://b/hub", "http://a:1") == "http://a:1"
    with pytest.raises(EndpointError):
        rebase("http://c/x", "http://b/hub", "http://a:1")
