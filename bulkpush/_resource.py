"""Small bases for the objects that own a resource (a session, a thread pool, a file, a display).

Written here rather than taken from anyio's ``AsyncResource`` (the same three
lines) so the library does not depend on anyio for a base class.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncResource", "Resource"]


class AsyncResource:
    """An async context manager whose exit is :meth:`aclose`; ``async with`` returns it.

    Subclasses implement :meth:`aclose` (idempotent) and may override
    :meth:`__aenter__` to open eagerly.
    """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the object owns; safe to call more than once."""
        raise NotImplementedError


class Resource:
    """A context manager whose exit is :meth:`close`; ``with`` returns it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release what the object owns; safe to call more than once."""
        raise NotImplementedError
