"""What the operator commands print: rich tables on a terminal, plain lines in a pipe.

A rich console that is not a terminal is 80 columns wide and cuts cells to fit
(`2026-…`), so `hubmirror audit > file` would lose the values a script reads. In a pipe
a table is tab-separated rows under a header row, and no line is wrapped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table


def to_terminal() -> bool:
    """Whether standard output is a terminal (else a pipe or a file)."""
    return sys.stdout.isatty()


def print_line(text: str) -> None:
    """One line of prose, printed whole (no markup: repo names and paths stay as they are)."""
    if to_terminal():
        Console(markup=False, highlight=False).print(text, soft_wrap=True)
    else:
        print(text)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table: boxed on a terminal, else tab-separated with every value whole."""
    if to_terminal():
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        Console(markup=False, highlight=False).print(table)
        return
    print("\t".join(headers))
    for row in rows:
        print("\t".join(_cell(value) for value in row))


def _cell(value: str) -> str:
    # A tab or newline inside a value would shift the columns of a tab-separated row.
    return value.replace("\t", " ").replace("\n", " ")
