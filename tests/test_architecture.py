"""The direction of imports is part of the design: `log` imports neither `api` nor `witness`; and the log's storage
is reached through its contract, never its engine."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_log_imports_neither_api_nor_witness():
    wrong = []
    for path in sorted((REPO / "log").rglob("*.py")):
        for package in _imports(path) & {"api", "witness"}:
            wrong.append(f"{path.relative_to(REPO)} imports {package}: log/ must not depend on it")
    assert not wrong, "\n".join(wrong)


def test_witness_does_not_import_api():
    wrong = [
        f"{path.relative_to(REPO)} imports api: witness/ uses log/ only"
        for path in sorted((REPO / "witness").rglob("*.py"))
        if "api" in _imports(path)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_rfc6962_prefixes_live_in_one_module():
    """Only log/hashing.py spells the domain-separation prefixes (the naive test reference aside)."""
    offenders = []
    for path in sorted((REPO / "log").rglob("*.py")):
        if path.name == "hashing.py":
            continue
        text = path.read_text().replace(" ", "")
        spelled = [f'{call}(b"\\x0{bit}"' for call in ("sha256", "update", "digest") for bit in (0, 1)]
        if any(pattern in text for pattern in spelled):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_nothing_outside_the_storage_reaches_into_the_log_stores_engine():
    """Personalities and jobs read through `Log.read` and write through `Log.write`; `store.engine` is the storage's
    own (the witness server's store has an engine of its own, over its own database: that is not this)."""
    offenders = []
    for package in ("log", "api", "witness"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.is_relative_to(REPO / "log" / "storage"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Attribute) and node.attr == "engine"
                        and (isinstance(node.value, ast.Attribute) and node.value.attr == "store"
                             or isinstance(node.value, ast.Name) and node.value.id == "store")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, "reads go through Log.read, writes through Log.write: " + ", ".join(offenders)
