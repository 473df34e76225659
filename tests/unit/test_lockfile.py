"""store.lockfile: odai.lock as deterministic TOML, and every way a hand-edited one is refused (spec/lockfile.md)."""

from __future__ import annotations

import tomllib

import pytest

from store.errors import UsageError
from store.local.roots import read_lockfile
from store.lockfile import LOCKFILE_VERSION, InvalidLockfile, Lockfile, Pin, PinnedFile, parse_lockfile
from store.oci.digest import Digest
from store.oci.manifest import Manifest, ModelFile
from store.oci.reference import Reference

D1, D2, D3 = (Digest(c * 64) for c in "123")


def _pin(name: str = "llama", tag: str = "v1", digest: Digest = D1, files: tuple[PinnedFile, ...] | None = None) -> Pin:
    files = files if files is not None else (PinnedFile("config.json", D2, 12), PinnedFile("weights/model.bin", D3, 1 << 40))
    return Pin(name, tag, "http://127.0.0.1:8080/models", digest, files)


GOOD = _pin()


def _text(pins: tuple[Pin, ...] = (GOOD,)) -> str:
    return Lockfile(pins).to_bytes().decode()


def test_the_written_form() -> None:
    # Literal bytes: a reviewer reads this diff, so the layout itself is the contract.
    assert _text() == (
        "version = 1\n"
        "\n"
        "[[model]]\n"
        'name = "llama"\n'
        'tag = "v1"\n'
        'remote = "http://127.0.0.1:8080/models"\n'
        f'digest = "{D1}"\n'
        "\n"
        "[[model.files]]\n"
        'path = "config.json"\n'
        f'digest = "{D2}"\n'
        "size = 12\n"
        "\n"
        "[[model.files]]\n"
        'path = "weights/model.bin"\n'
        f'digest = "{D3}"\n'
        "size = 1099511627776\n"
    )
    assert parse_lockfile(_text().encode()) == Lockfile((GOOD,))


def test_an_empty_lockfile() -> None:
    assert Lockfile().to_bytes() == b"version = 1\nmodel = []\n"
    assert parse_lockfile(Lockfile().to_bytes()) == Lockfile()
    assert parse_lockfile(b"version = 1\n") == Lockfile()


def test_pins_and_files_are_sorted_whatever_order_they_come_in() -> None:
    a, b, c = _pin("a", "v2"), _pin("a", "v10"), _pin("b", "latest")
    assert Lockfile((c, a, b)).to_bytes() == Lockfile((b, a, c)).to_bytes()
    names = [m["name"] + ":" + m["tag"] for m in tomllib.loads(Lockfile((c, a, b)).to_bytes().decode())["model"]]
    assert names == ["a:v10", "a:v2", "b:latest"]  # plain code-point order, the same on every machine
    reversed_files = _pin(files=tuple(reversed(GOOD.files)))
    assert Lockfile((reversed_files,)).to_bytes() == Lockfile((GOOD,)).to_bytes()


def test_with_pins_replaces_by_name_and_tag_and_keeps_the_rest() -> None:
    base = Lockfile((_pin("a", "v1"), _pin("b", "v1")))
    moved = _pin("a", "v1", digest=D2)
    updated = base.with_pins([moved, _pin("a", "v2")])
    assert [(p.ref_name, p.digest) for p in updated.pins] == [("a:v1", D2), ("a:v2", D1), ("b:v1", D1)]
    assert base.with_pins(list(base.pins)).to_bytes() == base.to_bytes()
    assert updated.select(Reference("a"), any_tag=True) == [moved, _pin("a", "v2")]
    assert updated.select(Reference("a", "v2")) == [_pin("a", "v2")]
    assert updated.select(Reference("a", None, _pin("a", "v2").digest)) == [_pin("a", "v2")]
    assert updated.select(Reference("c"), any_tag=True) == []


def test_pin_of_a_manifest() -> None:
    manifest = Manifest.of([ModelFile("z.bin", D3, 5), ModelFile("a/b.txt", D2, 0)])
    pin = Pin.of(Reference("m"), "file:///r", D1, manifest)
    assert (pin.ref_name, pin.remote, pin.digest) == ("m:latest", "file:///r", D1)
    assert pin.files == (PinnedFile("a/b.txt", D2, 0), PinnedFile("z.bin", D3, 5))
    assert pin.reference == Reference("m", None, D1)  # sync asks for the digest, never the tag
    assert pin.matches(manifest.files)
    assert not pin.matches(Manifest.of([ModelFile("z.bin", D3, 6), ModelFile("a/b.txt", D2, 0)]).files)


# -- refused lockfiles: each an InvalidLockfile (exit 2) that says what is wrong ----------

GOOD_TEXT = _text()


def _edited(old: str, new: str) -> bytes:
    assert old in GOOD_TEXT
    return GOOD_TEXT.replace(old, new, 1).encode()


BAD = {
    "malformed TOML": (b'version = 1\n[[model]\nname = "x"\n', "not valid TOML"),
    "not UTF-8": (b'version = 1\n# \xff\n', "not valid TOML"),
    # Both were exit 1, "internal error" (issue 16, garbage everywhere).
    "nesting past the recursion limit": (b"version = 1\nx = " + b"[" * 2000 + b"]" * 2000 + b"\n", "not valid TOML"),
    "a version of 5001 digits": (b"version = 1" + b"0" * 5000 + b"\n", "not valid TOML"),
    "no version": (GOOD_TEXT.replace("version = 1\n", "").encode(), "lockfile version None"),
    "unknown version": (_edited("version = 1", "version = 2"), "lockfile version 2"),
    "version as a string": (_edited("version = 1", 'version = "1"'), "lockfile version '1'"),
    "model not an array": (b'version = 1\nmodel = "llama"\n', "'model' must be an array"),
    "model entry not a table": (b"version = 1\nmodel = [1]\n", "must be a table"),
    "missing digest": (_edited(f'digest = "{D1}"\n', ""), "needs name, tag, remote, digest and files"),
    "missing files": (GOOD_TEXT.split("\n[[model.files]]")[0].encode(), "needs name, tag, remote, digest and files"),
    "wrong digest syntax": (_edited(f'digest = "{D1}"', f'digest = "{D1}"'.replace("sha256:", "sha512:")), "not a sha256 digest"),
    "uppercase digest": (_edited(str(D2), "sha256:" + "A" * 64), "not a sha256 digest"),
    "short file digest": (_edited(str(D3), str(D3)[:-1]), "not a sha256 digest"),
    "source a branch, not a commit": (_edited(f'digest = "{D1}"', f'source = "main"\ndigest = "{D1}"'), "invalid source 'main'"),
    "source a short commit": (_edited(f'digest = "{D1}"', f'source = "{"a" * 39}"\ndigest = "{D1}"'), "invalid source"),
    "source a number": (_edited(f'digest = "{D1}"', f'source = 5\ndigest = "{D1}"'), "invalid source 5"),
    "negative size": (_edited("size = 12", "size = -1"), "needs name, tag, remote, digest and files"),
    "size as a string": (_edited("size = 12", 'size = "12"'), "needs name, tag, remote, digest and files"),
    "size as a float": (_edited("size = 12", "size = 12.0"), "needs name, tag, remote, digest and files"),
    "size as a boolean": (_edited("size = 12", "size = true"), "needs name, tag, remote, digest and files"),
    "path with ..": (_edited('path = "config.json"', 'path = "../config.json"'), "escapes"),
    "path through ..": (_edited('path = "weights/model.bin"', 'path = "weights/../../../etc/passwd"'), "escapes"),
    "absolute path": (_edited('path = "config.json"', 'path = "/etc/passwd"'), "escapes"),
    "backslash path": (_edited('path = "config.json"', 'path = "..\\\\config.json"'), "backslash"),
    "empty path": (_edited('path = "config.json"', 'path = ""'), "empty"),
    "path twice": (_edited('path = "weights/model.bin"', 'path = "config.json"'), "two files at the same model path"),
    "file also a directory": (_edited('path = "weights/model.bin"', 'path = "config.json/x"'), "both a file and the directory"),
    "uppercase name": (_edited('name = "llama"', 'name = "Llama"'), "model 1"),
    "bad tag": (_edited('tag = "v1"', 'tag = "v1:2"'), "model 1"),
    "name that makes a digest reference": (_edited('name = "llama"\ntag = "v1"', f'name = "llama@sha256"\ntag = "{"a" * 64}"'), "invalid model name 'llama@sha256'"),
    "remote not a string": (_edited('remote = "http://127.0.0.1:8080/models"', "remote = 1"), "needs name, tag, remote"),
    "duplicate NAME:TAG": (
        Lockfile((GOOD,)).to_bytes() + Lockfile((_pin(digest=D2),)).to_bytes().replace(b"version = 1\n", b""),
        "pins the same NAME:TAG twice",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_lockfiles_are_refused_with_what_is_wrong(case: str) -> None:
    data, says = BAD[case]
    with pytest.raises(InvalidLockfile) as info:
        parse_lockfile(data, "app/odai.lock")
    err = info.value
    assert isinstance(err, UsageError) and err.exit_code == 2
    assert "app/odai.lock" in err.message and says in err.message, err.message
    assert "\n" not in err.message and err.hint


def test_each_bad_case_is_a_real_edit_of_the_good_lockfile() -> None:
    # An edit that silently did nothing would leave a case that fails for
    # another reason than its name says, or not at all.
    assert parse_lockfile(GOOD_TEXT.encode()) == Lockfile((GOOD,))
    assert GOOD_TEXT.encode() not in {data for data, _ in BAD.values()}
    assert len({data for data, _ in BAD.values()}) == len(BAD)


def test_the_duplicate_case_is_a_duplicate_and_not_something_else() -> None:
    data, _ = BAD["duplicate NAME:TAG"]
    doc = tomllib.loads(data.decode())
    assert [(m["name"], m["tag"]) for m in doc["model"]] == [("llama", "v1"), ("llama", "v1")]


def test_an_unknown_version_says_to_upgrade() -> None:
    with pytest.raises(InvalidLockfile) as info:
        parse_lockfile(_edited("version = 1", "version = 2"))
    assert "upgrade" in info.value.hint
    assert LOCKFILE_VERSION == 1


def test_read_lockfile(tmp_path) -> None:
    path = tmp_path / "odai.lock"
    with pytest.raises(InvalidLockfile) as info:
        read_lockfile(path)
    assert str(path) in info.value.message and "odai-store lock" in info.value.hint
    assert read_lockfile(path, missing_ok=True) == Lockfile()
    path.write_bytes(GOOD_TEXT.encode())
    assert read_lockfile(path) == Lockfile((GOOD,))
