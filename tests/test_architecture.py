"""The direction of imports is part of the design; these tests keep it (README, "Architecture").

    log/            the core: hashing, proofs, tiles, notes, storage, sequencing, the Log object
    log/audit/      the audit-record personality: uses the core, the core never uses it
    witness/        the witness server, the TSA, cosignature and RFC 3161 verification: uses log only
    api/server/     the log server (aiohttp app, routes, jobs): uses log and witness
    api/client/     client, monitor, producer SDK, offline evidence: uses log and witness's verification only,
                    and imports neither aiohttp's server parts nor SQLAlchemy
    api/cli/        the `auditlog` command: may use all of the above

Besides the arrows: no package imports another package's private names, and only the storage modules hold a
database engine (everything else reads through `Log.read` and writes through `Log.write`).
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE_ROOTS = ("log", "api", "witness")


def _modules(root: str) -> list[Path]:
    return sorted((REPO / root).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).parent.parts)


def _imported(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every absolute import in the file, wherever it sits (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(sources: list[Path], forbidden: tuple[str, ...], why: str) -> list[str]:
    wrong = []
    for path in sources:
        for module, _ in _imported(path):
            for package in forbidden:
                if _within(module, package):
                    wrong.append(f"{path.relative_to(REPO)} imports {module}: {why}")
    return wrong


def test_the_core_imports_neither_api_nor_witness():
    wrong = _violations(_modules("log"), ("api", "witness"), "log/ must not depend on it")
    assert not wrong, "\n".join(wrong)


def test_the_core_never_imports_the_audit_personality():
    core = [path for path in _modules("log") if "audit" not in path.relative_to(REPO / "log").parts]
    wrong = _violations(core, ("log.audit",), "the core knows nothing of the personality built on it")
    assert not wrong, "\n".join(wrong)


def test_witness_uses_the_core_only():
    wrong = _violations(_modules("witness"), ("api",), "witness/ uses log/ only")
    assert not wrong, "\n".join(wrong)


def test_server_and_client_do_not_import_each_other():
    wrong = _violations(_modules("api/server"), ("api.client", "api.cli"), "the server does not need the client side")
    wrong += _violations(_modules("api/client"), ("api.server", "api.cli"), "the client side installs no server")
    assert not wrong, "\n".join(wrong)


def test_no_package_imports_another_packages_private_names():
    wrong = []
    for root in CODE_ROOTS:
        for path in _modules(root):
            own = _package_of(path)
            for module, names in _imported(path):
                if not module.split(".")[0] in CODE_ROOTS or _within(module, own):
                    continue
                private = [n for n in names if n.startswith("_")]
                private += [part for part in module.split(".") if part.startswith("_")]
                if private:
                    wrong.append(f"{path.relative_to(REPO)} imports {', '.join(private)} from {module}: "
                                 "private to its package; make it public there or use what the package offers")
    assert not wrong, "\n".join(wrong)


# Where a SQLAlchemy engine may be created or used: the log's storage, the witness server's own store, migrations.
ENGINE_OWNERS = ("log/storage/", "witness/store.py")


def test_only_storage_modules_touch_a_database_engine():
    wrong = []
    for root in CODE_ROOTS:
        for path in _modules(root):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(ENGINE_OWNERS):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "engine":
                    wrong.append(f"{relative}:{node.lineno} uses .engine: read through Log.read, write through Log.write")
                elif isinstance(node, ast.ImportFrom) and node.module and any(
                        alias.name in ("create_engine", "make_engine", "Engine") for alias in node.names):
                    wrong.append(f"{relative}:{node.lineno} imports an engine maker from {node.module}")
    assert not wrong, "\n".join(wrong)


def test_the_client_side_imports_without_the_server_or_sqlalchemy():
    """A producer or an auditor installs the client: every client module must import without aiohttp's server parts,
    SQLAlchemy, alembic or a database driver (checked in a fresh interpreter, so nothing else has loaded them).
    Neither the client nor the server loads the ASN.1 stack of RFC 3161 until a timestamp is requested or read (a
    third of a server's start-up), nor the JSON Schema validators until an event is validated (80 ms of every
    command's), nor the report's charts and PDF libraries; and building the CLI's parser (every command does) loads
    none of these either: start-up is paid by every command and every process a test starts."""
    client = [_module_name(path) for path in _modules("api/client")]
    client += ["witness.cosignatures", "witness.rfc3161", "api.cli.main", "api.cli.client"]
    probe = (
        "import importlib, sys\n"
        "lazy = ('pyasn1', 'pyasn1_modules', 'rfc3161ng', 'jsonschema', 'fastjsonschema', 'matplotlib', 'reportlab')\n"
        f"for name in {client!r}:\n"
        "    importlib.import_module(name)\n"
        "importlib.import_module('api.cli.main').build_parser()\n"
        "heavy = ('aiohttp.web', 'sqlalchemy', 'alembic', 'psycopg') + lazy\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('aiohttp.web'))))\n"
        "import api.cli.server, api.server.app\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in lazy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    client_side, server = (done.stdout + "\n").split("\n")[:2]
    assert client_side.strip() == "", f"importing the client side loaded: {client_side.strip()}"
    assert server.strip() == "", f"importing the server loaded: {server.strip()}"


def test_the_rfc6962_prefixes_live_in_one_module():
    """Only log/hashing.py spells the domain-separation prefixes (the naive test reference aside)."""
    offenders = []
    for path in _modules("log"):
        if path.name == "hashing.py":
            continue
        text = path.read_text().replace(" ", "")
        spelled = [f'{call}(b"\\x0{bit}"' for call in ("sha256", "update", "digest") for bit in (0, 1)]
        if any(pattern in text for pattern in spelled):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_log_modules_import_each_other_without_a_cycle():
    """Every import between log/ modules counts, also one inside a function: a cycle hidden that way is still one."""
    modules = {_module_name(path): path for path in _modules("log")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names in _imported(path):
            targets.add(module)
            targets.update(f"{module}.{alias}" for alias in names)  # `from log import note` imports log.note
        graph[name] = {target for target in targets if target in modules and target != name}
    state: dict[str, str] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":  # on the path that led here: a cycle
                cycles.append(" -> ".join(trail[trail.index(target):] + [name, target]))
            elif target not in state:
                visit(target, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles between log/ modules:\n" + "\n".join(cycles)


def test_opentelemetry_is_imported_by_its_exporter_only():
    """opentelemetry-sdk is an optional extra (`auditlog[otel]`): nothing but the exporter may need it."""
    others = [path for root in CODE_ROOTS for path in _modules(root)
              if path.relative_to(REPO).as_posix() != "api/client/otel.py"]
    wrong = _violations(others, ("opentelemetry",), "only api/client/otel.py may need the optional otel extra")
    assert not wrong, "\n".join(wrong)
