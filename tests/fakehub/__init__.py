"""A fake Hugging Face Hub (plus a fake CDN) for testing the mirror against.

It reproduces the read side of the real Hub's protocol, including the parts a mirror
has to absorb: relative and cross-origin redirects, signed CDN URLs, Xet signals,
cursor pagination, gated/private/renamed repos, and git smart HTTP (the real `git
http-backend` over bare repos generated from the fake repos) with an LFS batch API whose
hrefs point at the CDN. Tests can observe every request and inject faults into file
bodies.
"""

from tests.fakehub.access import NO_ACCESS_TOKEN, VALID_TOKEN
from tests.fakehub.catalog import build_default_repos
from tests.fakehub.content import FakeCommit, FakeFile, FakeRepo, make_commit
from tests.fakehub.ledger import FaultKind, RequestRecord
from tests.fakehub.server import FakeHub

__all__ = [
    "NO_ACCESS_TOKEN",
    "VALID_TOKEN",
    "FakeCommit",
    "FakeFile",
    "FakeHub",
    "FakeRepo",
    "FaultKind",
    "RequestRecord",
    "build_default_repos",
    "make_commit",
]
