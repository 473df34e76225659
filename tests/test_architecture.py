"""The layer rule of spec/README.md, read from the source with ``ast``:

    cli -> api -> add|fetch|sync -> transfer -> remote, local -> oci -> errors

Every import counts, lazy ones inside functions and TYPE_CHECKING ones too: a
lazy import is still a dependency, only a cheaper one. Packages that do not
exist yet are simply not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "store"

# Use cases sit above transfer; transfer must stay ignorant of them.
USE_CASES = ("store.add", "store.fetch", "store.sync", "store.api", "store.cli", "store.serve", "store.lockfile")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Modules of the ``store`` package that the file at ``path`` imports, as absolute names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # 'from . import errors' imports the module store.errors, not the package.
            submodules = {f"{target}.{alias.name}" for alias in node.names if _exists(f"{target}.{alias.name}")}
            found |= submodules or {target}
    return {name for name in found if name == "store" or name.startswith("store.")}


def _files(package: str) -> list[Path]:
    root = PACKAGE.parent.joinpath(*package.split("."))
    if root.with_suffix(".py").is_file():
        return [root.with_suffix(".py")]
    return sorted(root.rglob("*.py")) if root.is_dir() else []


def _within(name: str, *allowed: str) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def _violations(package: str, is_allowed) -> list[str]:
    return [
        f"{_module_name(path)} imports {name}"
        for path in _files(package)
        for name in sorted(imports_of(path))
        if not is_allowed(name)
    ]


def test_the_import_reader_sees_imports() -> None:
    # A reader that found nothing would let every rule below pass.
    assert {"store.oci.index", "store.local.atomic", "store.local.layout"} <= imports_of(PACKAGE / "local" / "names.py")
    assert "store.local.gc" in imports_of(PACKAGE / "api.py")  # a lazy import inside a method
    assert "store.errors" in imports_of(PACKAGE / "oci" / "digest.py")
    assert "store.api" in imports_of(PACKAGE / "__init__.py")
    assert _files("store.oci") and _files("store.local")


def test_oci_is_pure_formats() -> None:
    assert _violations("store.oci", lambda n: _within(n, "store.oci", "store.errors")) == []


def test_local_uses_only_oci_and_errors() -> None:
    assert _violations("store.local", lambda n: _within(n, "store.local", "store.oci", "store.errors")) == []


def test_remote_and_local_never_import_each_other() -> None:
    assert _violations("store.local", lambda n: not _within(n, "store.remote")) == []
    assert _violations("store.remote", lambda n: not _within(n, "store.local")) == []


def test_transfer_knows_nothing_of_names_views_or_use_cases() -> None:
    banned = ("store.local.names", "store.local.views", *USE_CASES)
    assert _violations("store.transfer", lambda n: not _within(n, *banned)) == []


def test_nothing_below_the_api_imports_it() -> None:
    # The top: the public package and its __main__, the facade, the CLI. All else is below,
    # and importing the bare package 'store' would import the facade too.
    top = ("store", "store.__main__")
    below = [p for p in sorted(PACKAGE.rglob("*.py")) if _module_name(p) not in top and not _within(_module_name(p), "store.api", "store.cli")]
    assert len(below) > 10
    bad = [
        f"{_module_name(p)} imports {n}"
        for p in below
        for n in sorted(imports_of(p))
        if n == "store" or _within(n, "store.api", "store.cli")
    ]
    assert bad == []
