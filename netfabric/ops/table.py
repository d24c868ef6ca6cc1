"""``netfabric ops``: the op x backend matrix, derived from the registry."""

from __future__ import annotations

from .registry import BACKENDS, matrix

COLUMNS = ("semantics", "cost model", "conformance", *BACKENDS)


def print_matrix() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="netfabric HW-layer ops (a piece present: yes, missing: -)")
    table.add_column("op", no_wrap=True)
    table.add_column("origin", no_wrap=True)
    for col in COLUMNS:
        table.add_column(col, justify="center", no_wrap=True)
    for row in matrix():
        table.add_row(row["op"], row["origin"],
                      *("[green]yes[/green]" if row[c] else "[red]-[/red]" for c in COLUMNS))
    Console(width=max(120, Console().width)).print(table)
