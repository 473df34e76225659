"""The layer rule of spec/design.md, read from the source with ``ast``:

    cli -> api -> add|fetch|sync|... -> fetching -> transfer -> remote, local -> fs -> oci -> errors

Every import counts, lazy ones inside functions and TYPE_CHECKING ones too: a
lazy import is still a dependency, only a cheaper one. Packages that do not
exist yet are simply not checked, but every module that exists must belong to
a layer, so that none escapes the rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "store"

# Use cases sit above transfer; transfer must stay ignorant of them.
USE_CASES = ("store.add", "store.fetch", "store.push", "store.sync", "store.api", "store.cli", "store.serve", "store.fetching")

# The use-case layer by role: a verb does one command's work; a value module holds the
# typed results and files that verbs share. A verb imports no other verb.
VERBS = ("store.add", "store.hf_import", "store.fetch", "store.push", "store.serve", "store.pin", "store.sync", "store.export", "store.catalog")
VALUES = ("store.model", "store.reports", "store.config", "store.limits")
# The formats: bytes in, typed values out, no I/O. odai.lock sits beside oci/, so that local
# (gc, which keeps what lockfiles pin) reads it without calling up into the API.
# redact.py says what of a URL may be shown or kept: history (local) and messages (remote) both need it.
FORMATS = ("store.oci", "store.lockfile", "store.redact")
# Files others may read or replace (atomic writes, bounded reads): below both local and remote,
# which a writable file remote needs as much as the store does.
FS = "store.fs"
API = ("store.api", "store.download")
# What the verbs that bring models in share (fetch, sync, and pin's resolving): one command's
# session, its plan and its execution. Below the verbs, above transfer.
FETCHING = ("store.fetching",)
# Above store/remote/, a remote is its interface, opened for a URL by select.py's table.
REMOTE_FACE = ("store.remote.base", "store.remote.sink", "store.remote.select")  # the interfaces, read and written, and the opener
# What the cli may use besides api: the errors it turns into exit codes, and the values the
# public API takes and returns (spec/design.md, Layers), with the grammars of those it takes
# spelled as on the command line (limits.py: a rate, a timeout).
CLI_VALUES = ("store.errors", "store.oci", "store.model", "store.reports", "store.limits", "store.transfer.progress")

# Edges that break the rule today, each with the work that removes it. They are listed one by
# one, so that a NEW edge of the same kind fails; when one goes, its line must go too.
KNOWN: set[str] = set()


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
    assert {"store.oci.index", "store.fs.atomic", "store.local.layout"} <= imports_of(PACKAGE / "local" / "names.py")
    assert "store.local.gc" in imports_of(PACKAGE / "api.py")  # a lazy import inside a method
    assert "store.errors" in imports_of(PACKAGE / "oci" / "digest.py")
    assert "store.api" in imports_of(PACKAGE / "__init__.py")
    assert _files("store.oci") and _files("store.local")


def test_the_formats_are_pure() -> None:
    for fmt in FORMATS:
        assert _violations(fmt, lambda n: _within(n, *FORMATS, "store.errors")) == []


def test_local_uses_only_fs_oci_and_errors() -> None:
    assert _violations("store.local", lambda n: _within(n, "store.local", FS, *FORMATS, "store.errors")) == []


def test_fs_uses_only_the_formats_and_errors() -> None:
    assert _violations(FS, lambda n: _within(n, FS, *FORMATS, "store.errors")) == []


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


def _all_violations(is_allowed) -> list[str]:
    """Imports, anywhere in the package, for which ``is_allowed(module, name)`` is false."""
    return [
        f"{_module_name(path)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in sorted(imports_of(path))
        if not is_allowed(_module_name(path), name)
    ]


def _every_import() -> set[str]:
    return set(_all_violations(lambda module, name: False))


def _beyond_known(found: list[str]) -> list[str]:
    """The violations that are not known. A known one that is gone fails too, so that its line goes."""
    assert KNOWN <= _every_import(), f"fixed, so delete from KNOWN: {sorted(KNOWN - _every_import())}"
    return sorted(set(found) - KNOWN)


def test_every_module_belongs_to_a_layer() -> None:
    layers = ("store.cli", *API, *VERBS, *VALUES, *FETCHING, "store.transfer", "store.remote", "store.local", FS, *FORMATS, "store.errors")
    modules = [_module_name(p) for p in sorted(PACKAGE.rglob("*.py"))]
    assert [m for m in modules if m not in ("store", "store.__main__") and not _within(m, *layers)] == []


def test_errors_imports_nothing_of_ours() -> None:
    assert _violations("store.errors", lambda n: False) == []


def test_model_imports_only_oci() -> None:
    assert _violations("store.model", lambda n: _within(n, "store.oci")) == []


def test_remote_uses_only_fs_oci_redact_and_errors() -> None:
    assert _violations("store.remote", lambda n: _within(n, "store.remote", FS, "store.oci", "store.redact", "store.errors")) == []


def test_transfer_uses_only_the_layers_below_it() -> None:
    allowed = ("store.transfer", "store.remote", "store.local", FS, "store.oci", "store.errors")
    assert _violations("store.transfer", lambda n: _within(n, *allowed)) == []


def test_only_remote_knows_the_concrete_remotes() -> None:
    found = _all_violations(lambda m, n: _within(m, "store.remote") or not _within(n, "store.remote") or n in REMOTE_FACE)
    assert _beyond_known(found) == []


def test_use_cases_import_only_their_layer_and_below() -> None:
    allowed = (*VERBS, *VALUES, *FETCHING, "store.transfer", "store.remote", "store.local", FS, *FORMATS, "store.errors")
    found = [v for case in (*VERBS, *VALUES) for v in _violations(case, lambda n: _within(n, *allowed))]
    assert found == []


def test_fetching_sits_below_the_verbs() -> None:
    # It may use the values the verbs share (the Model it returns, config.toml's remotes), never a verb.
    allowed = (*FETCHING, "store.model", "store.config", "store.transfer", "store.remote", "store.local", FS, *FORMATS, "store.errors")
    assert _violations("store.fetching", lambda n: _within(n, *allowed)) == []


def test_no_use_case_imports_a_verb() -> None:
    # A verb that needs another's work needs a piece below both (a plan, a value), not the verb.
    found = [v for case in (*VERBS, *VALUES) for v in _violations(case, lambda n, case=case: n == case or not _within(n, *VERBS))]
    assert _beyond_known(found) == []


def test_the_cli_reaches_use_cases_only_through_the_api() -> None:
    allowed = ("store.cli", "store.api", *CLI_VALUES)
    assert _violations("store.cli", lambda n: n == "store" or _within(n, *allowed)) == []


def test_only_the_cli_imports_the_package_root() -> None:
    found = _all_violations(lambda m, n: n != "store" or _within(m, "store.cli"))
    assert found == []
