"""The local inputs of the client commands, read and checked before anything is downloaded: the log's verifier key,
witness keys, the TSA's certificate. A missing or unparsable one is `InvalidInput` (exit 2), naming the flag and the
file, so a typo is never mistaken for a log that failed verification."""

from __future__ import annotations

import os
from pathlib import Path

from api.cli.options import VKEY_SUFFIX, BadEnvironment, env
from log import defaults
from log.errors import InvalidInput, LogError


def key_text(value: str, flag: str) -> str:
    """A key given on the command line: the key itself, or a file holding it."""
    if os.path.isfile(value):
        try:
            return Path(value).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{flag} {value}: cannot read the file: {exc}", field=flag) from None
    if value.count("+") < 2:  # a note key is name+id+key; anything else was meant as a file
        raise InvalidInput(f"{flag} {value}: no such file, and not a key", field=flag)
    return value


def default_log_key_file() -> Path:
    return Path(env("AUDITLOG_DATA_DIR", defaults.DATA_DIR)) / f"log{VKEY_SUFFIX}"


def log_key(args, *, required: bool = True) -> str | None:
    """The log's verifier key, checked: --log-key (or --key), else $AUDITLOG_VERIFIER_KEY, else <data-dir>/log.vkey.
    None when there is none and it is not required."""
    from log.note_keys import parse_verifier_key

    given, flag = getattr(args, "log_key", None), "--log-key"
    if given is None and env("AUDITLOG_VERIFIER_KEY"):
        given, flag = env("AUDITLOG_VERIFIER_KEY"), "AUDITLOG_VERIFIER_KEY"
    if given is not None:
        text = key_text(given, flag)
    elif default_log_key_file().is_file():
        flag = str(default_log_key_file())
        text = key_text(flag, flag)
    elif required:
        raise InvalidInput(f"no log verifier key: pass --log-key, set AUDITLOG_VERIFIER_KEY, or run where "
                           f"{default_log_key_file()} exists", field="log_key")
    else:
        return None
    try:
        parse_verifier_key(text)
    except LogError as exc:
        raise InvalidInput(f"{flag}: not a log verifier key: {exc}", field="log_key") from None
    return text


def witness_policy(args):
    """The witnesses --witness-key names and --witness-k's threshold, parsed; None without --witness-key."""
    from witness.cosignatures import WitnessPolicy

    keys = getattr(args, "witness_key", None) or []
    if not keys:
        if getattr(args, "witness_k", None) is not None:
            raise InvalidInput("--witness-k needs --witness-key", field="witness_k")
        return None
    try:
        return WitnessPolicy(tuple(key_text(k, "--witness-key") for k in keys), args.witness_k)
    except InvalidInput as exc:
        raise InvalidInput(f"--witness-key: {exc}", field="witness_key") from None


def tsa_certificate(args) -> bytes | None:
    """The PEM of --tsa-ca, checked to hold at least one X.509 certificate; None without --tsa-ca."""
    from witness.rfc3161 import load_certificates

    path = getattr(args, "tsa_ca", None)
    if path is None:
        return None
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"--tsa-ca {path}: cannot read the file: {exc.strerror or exc}", field="tsa_ca") from None
    try:
        load_certificates(pem)
    except InvalidInput as exc:
        raise InvalidInput(f"--tsa-ca {path}: {exc}", field="tsa_ca") from None
    return pem


def output_file(path: str | None, flag: str) -> None:
    """Fail before any download when an output file cannot be written: its directory missing, or a directory."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{flag} {path}: is a directory", field=flag.lstrip("-"))
    parent = target.parent
    if not parent.is_dir():
        raise InvalidInput(f"{flag} {path}: no such directory {parent}", field=flag.lstrip("-"))
    if not os.access(parent, os.W_OK):
        raise InvalidInput(f"{flag} {path}: cannot write in {parent}", field=flag.lstrip("-"))


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def servers(args):
    """The log's servers (api/client/servers.py ServerList): every URL of --server (repeated, or with commas), else
    of $AUDITLOG_SERVER (or $AUDITLOG_URL), else the default; made once per command, so that every request of it
    starts from the server that answered last. A bad URL in a variable is BadEnvironment naming it."""
    from api.client.servers import ServerList, parse_servers

    made = getattr(args, "server_list", None)
    if made is not None:
        return made
    given = getattr(args, "server", None)
    if not given:
        name = next((name for name in ("AUDITLOG_SERVER", "AUDITLOG_URL") if env(name)), None)
        if name is None:
            given = [defaults.SERVER_URL]
        else:
            try:
                given = parse_servers(env(name))
            except InvalidInput as exc:
                raise BadEnvironment(f"{name}: {exc}") from None
    args.server_list = ServerList(given)
    return args.server_list


def token(args) -> str | None:
    """The bearer credential for the log: --token (or $AUDITLOG_TOKEN), else $AUDITLOG_ADMIN_TOKEN, else the data
    dir's admin.token (`--data-dir`, $AUDITLOG_DATA_DIR, ./data) when the server is on this machine: the operator
    who ran `./scripts/serve` needs no extra step, and the local admin secret is never sent to another host (with
    several servers: only when every one is on this machine)."""
    from log.audit.admin import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE

    given = getattr(args, "token", None) or env(ADMIN_TOKEN_ENV)
    if given:
        return given.strip()
    if not hasattr(args, "server") or not all(_loopback(url) for url in servers(args).urls):
        return None
    data_dir = getattr(args, "data_dir", None) or env("AUDITLOG_DATA_DIR", defaults.DATA_DIR)
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def log_client(args, log_key_text: str | None = None):
    """A verifying LogClient for the servers of --server (`servers(args)`) with the log key (checked), the
    credential of `token(args)`, and the CA of --ca-cert (else the system trust store) for an https:// log."""
    from api.client.log_client import LogClient

    return LogClient(servers(args), log_key_text if log_key_text is not None else log_key(args), token=token(args),
                     ca_cert=getattr(args, "ca_cert", None))
