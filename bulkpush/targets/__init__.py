"""The targets bulkpush pushes to, by kind: the name a job spec gives its target.

A :class:`TargetKind` says how a worker (or any driver that knows only a
kind, an API URL, a destination and a token) reaches one kind of target:
its default API URL, how a token becomes auth headers, and how a
destination becomes a :class:`~bulkpush.Target`. Adding a target adds one
entry to :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bulkpush._http import Secret
from bulkpush._target import Target
from bulkpush.errors import ConfigError
from bulkpush.targets import productsup_stream

__all__ = ["KINDS", "TargetKind", "target_kind"]


@dataclass(frozen=True, slots=True)
class TargetKind:
    """One kind of target (see the module docstring)."""

    name: str
    default_api_url: str
    auth: Callable[[str], Mapping[str, Secret]]
    target: Callable[[str], Target]


def _bearer(token: str) -> Mapping[str, Secret]:
    return {"Authorization": Secret(f"Bearer {token}")}


KINDS: Mapping[str, TargetKind] = {
    productsup_stream.KIND: TargetKind(
        name=productsup_stream.KIND,
        default_api_url=productsup_stream.DEFAULT_API_URL,
        auth=_bearer,
        target=productsup_stream.StreamTarget,
    ),
}


def target_kind(name: str) -> TargetKind:
    """The kind called ``name``; :class:`ConfigError` names the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise ConfigError(f"unknown target kind {name!r}: known kinds are {known}") from None
