"""Region scope: a principal sees the subtree under its ``region_code`` (None = the whole node).

Region codes are civil codes (2/4/6/8 digits) or custom codes under a parent, so the tree is the
``parent_code`` links, not code prefixes; subtrees are recursive CTEs that run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from vigil.storage.models import Region

#: Deeper than any real tree (province … village plus custom levels); stops a corrupted cycle.
MAX_DEPTH = 32


def subtree_codes(root: str) -> Select[tuple[str]]:
    """A SELECT of ``root`` and every region under it."""
    tree = (
        select(Region.code).where(Region.code == root).cte(recursive=True)
    )  # anonymous: a query may hold two subtrees
    tree = tree.union_all(select(Region.code).where(Region.parent_code == tree.c.code))
    return select(tree.c.code)


def in_scope_clause(column: QueryableAttribute[Any], root: str | None) -> ColumnElement[bool]:
    """A WHERE clause: ``column`` names a region inside ``root``'s subtree (always true for root None)."""
    if root is None:
        return true()
    return column.in_(subtree_codes(root))


async def ancestors(session: AsyncSession, code: str) -> list[str]:
    """``code`` followed by its parent, grandparent, … up to a root (empty if ``code`` does not exist)."""
    chain: list[str] = []
    current: str | None = code
    while current is not None and len(chain) < MAX_DEPTH:
        parent = (await session.execute(select(Region.parent_code).where(Region.code == current))).first()
        if parent is None:
            break
        chain.append(current)
        current = parent[0]
    return chain


async def region_in_scope(session: AsyncSession, code: str, root: str | None) -> bool:
    """True if region ``code`` exists and lies in ``root``'s subtree (``root`` None: anywhere)."""
    chain = await ancestors(session, code)
    if not chain:
        return False
    return root is None or root in chain


def scope_contains(outer: str | None, inner_chain: list[str]) -> bool:
    """True if a scope rooted at ``inner_chain[0]`` (given with its ancestors) lies inside ``outer``."""
    return outer is None or outer in inner_chain
