"""Where the pipeline page draws each job: columns by depth in the ``needs`` graph
(a job one column right of its deepest need), rows in the jobs' order. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def columns(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each job's column: 0 without needs, else one more than its deepest need's. Needs
    that name no job are ignored; a cycle (never planned, but drawn anyway) is cut."""
    col: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in col:
            return col[name]
        deps = [n for n in needs.get(name, ()) if n in needs and n not in seen]
        d = 1 + max((depth(n, seen | {name}) for n in deps), default=-1)
        col[name] = d
        return d

    for name in needs:
        depth(name, frozenset())
    return col


def grid(order: Sequence[str], needs: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """(column, row) of each job of ``order``: rows count down each column in order."""
    col = columns({n: needs.get(n, ()) for n in order})
    used: dict[int, int] = {}
    out: dict[str, tuple[int, int]] = {}
    for name in order:
        c = col[name]
        out[name] = (c, used.get(c, 0))
        used[c] = used.get(c, 0) + 1
    return out
