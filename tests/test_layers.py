"""Package boundaries: no package imports one above it (or beside it) in the layering below.

The shared code (protocol, errors, config, signals, logging, key files) is at the bottom; the
dev harness, which starts everything, is at the top. An import cycle between packages, or the
shared package reaching up into the procmgr, is a failure here with the line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# a package may import only packages with a lower number (and itself)
LAYERS = {
    "pyis_common": 0,  # shared: protocol, errors, config, signals, logging, key files
    "certs": 1,  # the offline CA (key files from pyis_common)
    "authsign": 2,  # access objects: sign, verify (trust from certs)
    "worker": 3,  # the unprivileged image pipeline (path claims from authsign)
    "is_proxy": 3,  # the broker
    "isweb": 3,  # the browser gateway, a client like is.js
    "iscli": 3,  # the terminal client and its library
    "procmgr": 4,  # root: access, routing; its zygote pre-imports the worker
    "pyisdev": 5,  # is-dev and the harness the tests and benches run
}
NOT_PACKAGES = {"tests", "bench", "build", "docs", "systemd"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def repo_packages() -> list[str]:
    return sorted(
        p.name
        for p in REPO.iterdir()
        if (p / "__init__.py").is_file() and p.name not in NOT_PACKAGES
    )


def test_every_package_has_a_layer():
    missing = [name for name in repo_packages() if name not in LAYERS]
    assert not missing, f"place these packages in LAYERS (tests/test_layers.py): {missing}"


def test_no_package_imports_a_higher_or_sibling_package():
    wrong = []
    for package in repo_packages():
        for path in sorted((REPO / package).rglob("*.py")):
            for line, target in imports_of(path):
                if target in LAYERS and target != package and LAYERS[target] >= LAYERS[package]:
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds imports inside functions too (a lazy import is still a dependency)."""
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from procmgr.__main__ import dev_user\n")
    assert imports_of(module) == [(1, "os"), (4, "procmgr")]
