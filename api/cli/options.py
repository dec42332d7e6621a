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

from log import defaults

T = TypeVar("T")

VKEY_SUFFIX = ".vkey"  # beside the signing key, its verifier key: serve and keygen write it, client commands read it


class Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error said in one line (`auditlog add: unrecognized arguments: --x`, then
    where the usage is) and exit status 2, like every other failure; the subcommands' parsers are of this class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


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


AUTO = "auto"


def count_or_auto(text: str) -> int | str:
    """A process count: a non-negative integer, or AUTO for the default chosen from the machine's cores."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return non_negative(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither auto nor a non-negative decimal integer") from None


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


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `2h` or `1d` (a positive number and an optional unit)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (a positive number with s, m, h or d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def duration_or_off(text: str) -> float:
    """`duration`, or 0 (`0`, `off`) for a job that only runs when asked."""
    if text.strip() in ("0", "off"):
        return 0.0
    return duration(text)


def entries_or_duration(text: str) -> int | float:
    """A lag limit: a bare integer is a number of entries (`10`); a number with a unit is a duration in seconds
    (`90s`, `15m`, `2h`, `1d`), through `duration`."""
    if re.fullmatch(r"[0-9]{1,19}", text.strip()):
        return int(text)
    if not re.fullmatch(r"[0-9.]+[smhd]", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of entries (10) nor a duration with a unit "
                                         "(90s, 15m, 2h, 1d)")
    return duration(text)


def server_url(text: str) -> str:
    """A log's base URL: http:// or https://, a host, and an optional path prefix (no query or fragment); checked
    by api/client/servers.py `check_url`."""
    from api.client.servers import check_url
    from log.errors import InvalidInput

    try:
        return check_url(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def server_urls(text: str) -> list[str]:
    """One or more log base URLs, separated by commas: each http:// or https://, a host, and an optional path
    prefix (no query or fragment); a bad one is named (api/client/servers.py `parse_servers`)."""
    from api.client.servers import parse_servers
    from log.errors import InvalidInput

    try:
        return list(parse_servers(text))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_WHAT = {non_negative: "a non-negative integer", count_or_auto: "auto or a non-negative integer",
         positive: "a positive integer",
         positive_seconds: "a positive number of seconds", duration: "a duration (90s, 15m, 2h, 1d)",
         entries_or_duration: "a number of entries or a duration (90s, 15m, 2h, 1d)",
         duration_or_off: "a duration (90s, 15m, 2h, 1d) or 0 (off)"}


# -- the flags the client commands share: one name per thing, the same in every command --------------------------

def server_option(parser) -> None:
    """--server, and with it --ca-cert: every command that talks to a log may talk to an https:// one. Several
    servers of one log are given by repeating --server or separating URLs with commas (in AUDITLOG_SERVER too);
    the command reads them with api/cli/inputs.py `servers(args)`, which falls back on the variables and the
    default then, when it runs."""
    parser.add_argument("--server", "--url", dest="server", type=server_urls, action="extend", default=None,
                        metavar="URL[,URL...]",
                        help="the log's URL; several servers of one log: repeat the flag or separate URLs with commas, "
                             "asked in turn on connection errors and 503s (env AUDITLOG_SERVER; default "
                             f"{defaults.SERVER_URL})")
    ca_cert_option(parser)


def ca_cert_option(parser) -> None:
    """--ca-cert PEM (env AUDITLOG_CA_CERT): the CA an https:// log's certificate must chain to; without it, the
    system trust store (api/client/tls.py). Read when the command runs: an unreadable file is exit 2."""
    parser.add_argument("--ca-cert", default=env("AUDITLOG_CA_CERT"), metavar="PEM",
                        help="for an https:// log: the CA certificate(s) its certificate must chain to (env "
                             "AUDITLOG_CA_CERT; default the system trust store)")


def log_key_option(parser, *, required: bool = False) -> None:
    parser.add_argument("--log-key", "--key", dest="log_key", metavar="VKEY", required=required,
                        help="the log's verifier key, or a file holding it (env AUDITLOG_VERIFIER_KEY; default "
                             "<data-dir>/log.vkey)")


def witness_options(parser) -> None:
    parser.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                        help="a witness's cosigner verifier key, or a file holding it (repeatable; keys with one name "
                             "are one witness): require its cosignature")
    parser.add_argument("--witness-k", type=positive, metavar="K",
                        help="cosignatures required (default: every witness given)")
    parser.add_argument("--tsa-ca", metavar="PEM",
                        help="the TSA's CA (or own) certificate, PEM: require a valid RFC 3161 timestamp")


def wait_options(parser, what: str) -> None:
    """--wait and --timeout: wait until `what` is cosigned and timestamped before writing its evidence."""
    parser.add_argument("--wait", action="store_true",
                        help=f"with --evidence: first wait until {what} is covered by a cosigned checkpoint (when "
                             f"the log has witnesses) and a timestamp (when it has a TSA); exit 3 at --timeout")
    parser.add_argument("--timeout", type=duration, default=defaults.EVIDENCE_WAIT_TIMEOUT, metavar="DURATION",
                        help="with --wait: how long to wait (90, 90s, 15m; default %(default)g s)")


def token_option(parser) -> None:
    parser.add_argument("--token", "--admin-token", dest="token", default=env("AUDITLOG_TOKEN"),
                        help="a bearer token for the log (env AUDITLOG_TOKEN)")


def json_option(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


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
