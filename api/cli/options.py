"""Option values: the parsers the flags use, and the same parsers over `AUDITLOG_*` variables.

A flag's value is checked by argparse (`type=`), a bad one is a usage error (exit 2). A variable's value is checked
when the command that reads it runs, never while the parser is built, so a bad variable breaks only the commands
that use it; a bad one is `BadEnvironment`, which main() prints as one line naming the variable and the value
(exit 2). An empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

VKEY_SUFFIX = ".vkey"  # beside the signing key, its verifier key: serve and keygen write it, client commands read it


class BadEnvironment(Exception):
    """An `AUDITLOG_*` variable holds a value its command cannot use; the message names both."""


def env(name: str, default: str | None = None) -> str | None:
    """The variable's text, or `default` when it is unset or empty."""
    value = os.environ.get(name)
    return value if value else default


def non_negative(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative decimal integer")
    return int(text)


def positive(text: str) -> int:
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


_WHAT = {non_negative: "a non-negative integer", positive: "a positive integer",
         positive_seconds: "a positive number of seconds"}


def flag_or_env(flag: T | None, name: str, parse: Callable[[str], T], default: T) -> T:
    """The flag's value when it was given; else the variable `name` through `parse`; else `default`."""
    if flag is not None:
        return flag
    text = env(name)
    if text is None:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError:
        raise BadEnvironment(f"{name} must be {_WHAT[parse]}, not {text!r}") from None


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal and at most every 1% of the work
    (`auditlog verify` and `auditlog db check`)."""

    def __init__(self, stream=sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = done * 100 // total
        if percent == self.last:
            return
        self.last = percent
        filled = percent * 30 // 100
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {done:,}/{total:,} entries")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
