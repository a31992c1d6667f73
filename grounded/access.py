"""Who may read what: the caller (:class:`Principal`) and the ACL rules every channel applies.

- A caller sees documents whose source has no ACL, or shares one of the caller's groups; an
  admin (and everyone in local development mode, while no API key exists) sees everything.
- A document's own ACL can only narrow its source's (:func:`effective_acl`).
- A source's mirrored tables follow the source's configured ACL (:func:`readable_sources`).

API keys, which map a request to a principal, live in :mod:`grounded.ops.keys`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["DEV_PRINCIPAL", "NO_ONE", "Principal", "effective_acl", "readable_sources"]

NO_ONE = "grounded:no-one"
"""An ACL group no key can hold: a document whose own ACL shares no group with its source's."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: which key, which groups, whether it is an admin."""

    key_id: str
    groups: tuple[str, ...]
    admin: bool = False

    @property
    def acl_groups(self) -> tuple[str, ...] | None:
        """The ``SearchFilters.acl_groups`` for this caller (``None``: unrestricted)."""
        return None if self.admin else self.groups


DEV_PRINCIPAL = Principal(key_id="local-dev", groups=(), admin=True)
"""Everyone, while no API key exists (local development mode)."""


DEV_PRINCIPAL = Principal(key_id="local-dev", groups=(), admin=True)
"""Everyone, while no API key exists (local development mode)."""


def readable_sources(acls: Mapping[str, Sequence[str]], acl_groups: Sequence[str] | None) -> set[str] | None:
    """Names of the sources whose data (documents *and* mirrored tables) ``acl_groups`` may read.

    ``acls`` maps source name -> its configured ACL (``{n: s.acl for n, s in settings.sources.items()}``);
    ``None`` groups (admins, development mode) read everything and get ``None`` back. The SQL
    tool offers only the tables of these sources, and must describe a hidden source's table
    exactly as it describes a table that does not exist.
    """
    if acl_groups is None:
        return None
    groups = set(acl_groups)
    return {name for name, acl in acls.items() if not acl or groups & set(acl)}


def effective_acl(source_acl: Sequence[str], doc_acl: Sequence[str]) -> tuple[str, ...]:
    """The groups that may read a document: its source's, narrowed by its own when it has one."""
    if not source_acl:
        return tuple(sorted(set(doc_acl)))
    if not doc_acl:
        return tuple(sorted(set(source_acl)))
    return tuple(sorted(set(source_acl) & set(doc_acl))) or (NO_ONE,)
