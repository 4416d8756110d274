"""One small base for the objects that own a resource (a session, a thread pool, a server).

Written here rather than taken from anyio's ``AsyncResource`` (the same three
lines) so the library does not depend on anyio for a base class.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncResource"]


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
