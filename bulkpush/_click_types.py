"""The click types of numeric flags, shared by every command (the emulator's too).

A bad value is refused with the flag's own name and exit code 2. This module
imports only click, so the emulator's command can use it without importing
the client.
"""

from __future__ import annotations

import math
from typing import Any

import click

__all__ = ["NON_NEGATIVE", "POSITIVE", "SHARE", "FiniteFloat"]


class FiniteFloat(click.FloatRange):
    """A float in a range, and finite: ``nan`` and ``inf`` are refused.

    ``click.FloatRange`` alone lets ``nan`` through (it compares false with
    every bound) and ``inf`` when there is no upper bound.
    """

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


POSITIVE = FiniteFloat(min=0, min_open=True)
"""A finite float above 0 (rates, intervals)."""
NON_NEGATIVE = FiniteFloat(min=0)
"""A finite float of at least 0 (seconds of a delay or a deadline)."""
SHARE = FiniteFloat(0, 1)
"""A finite float from 0 to 1 (a share of requests)."""
