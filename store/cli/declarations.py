"""The command line declared once: every command with its arguments and options, their types, defaults and help.

Everything else derives from this table. commands.py builds click's group
from it (help, version, errors, every spelling click takes); quick.py reads
the usual spellings by it without importing click; each command's body in
actions.py gets its parameters as attributes named by ``dest`` here.

A type is a value saying what click checks (Text, Choice, Integer, FsPath,
Limit, or Flag for an option that takes no value). commands.py turns it
into click's type, and quick.py converts by it exactly as that click type
would, or hands the argument list to click. Importing this module loads no
click: it is on the path of every command (spec/cli.md, "Start-up"), so its
classes are plain ones, which cost a fraction of a named tuple to create
(spec/design.md, "Value types and start-up").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..limits import CONNECTIONS, RETRIES, parse_rate, parse_seconds
from ..model import LINK_MODES, PUSH_FORMATS
from ..oci.reference import parse_registry_host
from . import actions

__all__ = [
    "ABOUT",
    "BY_NAME",
    "COMMANDS",
    "GLOBAL",
    "Argument",
    "Choice",
    "Command",
    "Flag",
    "FsPath",
    "Integer",
    "Limit",
    "Option",
    "Text",
]


class Text:
    """Any string, as given."""

    __slots__ = ()


class Flag:
    """An option that takes no value: True when given, else False."""

    __slots__ = ()


class Choice:
    """One of ``choices``, spelled exactly."""

    __slots__ = ("choices",)

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices


class Integer:
    """An integer from ``low`` to ``high`` (None: no upper bound)."""

    __slots__ = ("high", "low")

    def __init__(self, low: int, high: int | None = None) -> None:
        self.low = low
        self.high = high


class FsPath:
    """A path, with click.Path's checks: where it exists it must be of an allowed kind and readable.

    ``exists``: it must exist. ``as_path``: the value is a pathlib.Path, else the string given.
    """

    __slots__ = ("as_path", "dir_okay", "exists", "file_okay")

    def __init__(self, *, exists: bool = False, file_okay: bool = True, dir_okay: bool = True, as_path: bool = True) -> None:
        self.exists = exists
        self.file_okay = file_okay
        self.dir_okay = dir_okay
        self.as_path = as_path


class Limit:
    """A value of a grammar below the command line (store/limits.py), which the Python API reads too.

    ``parse`` raises UsageError, whose message click shows, for a spelling it refuses.
    """

    __slots__ = ("name", "parse")

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse


if TYPE_CHECKING:
    Kind = Text | Flag | Choice | Integer | FsPath | Limit
TEXT = Text()
FLAG = Flag()


class Argument:
    """A positional parameter; ``many``: all the remaining arguments, as a tuple (the last one only)."""

    __slots__ = ("dest", "kind", "many", "metavar", "required")

    def __init__(self, dest: str, kind: Kind = TEXT, *, many: bool = False, required: bool = True, metavar: str | None = None) -> None:
        self.dest = dest
        self.kind = kind
        self.many = many
        self.required = required
        self.metavar = metavar


class Option:
    """An option, by its ``names``, the long one last; its value goes to ``dest``, else to the long name as click names it.

    ``default`` given as text is converted as a given value is, as click does
    (so a default path is checked); ``multiple`` collects every use in a tuple.
    """

    __slots__ = ("default", "dest", "help", "kind", "metavar", "multiple", "names", "show_default")

    def __init__(
        self,
        *names: str,
        help: str,
        kind: Kind = TEXT,
        dest: str | None = None,
        default: Any = None,
        multiple: bool = False,
        metavar: str | None = None,
        show_default: bool = False,
    ) -> None:
        self.names = names
        self.dest = dest or names[-1][2:].replace("-", "_")
        self.kind = kind
        self.default = False if isinstance(kind, Flag) else default
        self.multiple = multiple
        self.metavar = metavar
        self.help = help
        self.show_default = show_default


class Command:
    """A command: its name on the command line, its body in actions.py, its help, then its parameters in help order."""

    __slots__ = ("body", "help", "name", "params")

    def __init__(self, name: str, body: Callable[[actions.Context, Any], None], help: str, *params: Argument | Option) -> None:
        self.name = name
        self.body = body
        self.help = help
        self.params = params


ABOUT = """A content-addressed store for AI models.

Model files live once, under their SHA-256 digest, in an OCI image layout;
names like llama-3b:q4 point at manifests that list them. Commands that
produce a model print its directory on stdout, and nothing else.
The options below may also follow COMMAND.
"""

# Before the command or after it (spec/cli.md, "Synopsis"). dest: the names actions.Context reads.
GLOBAL = (
    Option("--store", dest="store_dir", metavar="DIR", help="Store directory [default: $ODAI_STORE_HOME, else $XDG_CACHE_HOME/odai-store, else ~/.cache/odai-store]."),
    Option("--shared", kind=FLAG, help="Create the store group-writable (setgid) for every member of its group."),
    Option("--json", kind=FLAG, dest="as_json", help="Print one JSON document on stdout."),
    Option("-q", "--quiet", kind=FLAG, help="No messages on stderr, only errors."),
    Option("-v", "--verbose", kind=FLAG, help="More detail, and tracebacks of errors."),
    Option(
        "--lock-timeout",
        kind=Integer(0),
        default=600,  # seconds; the Python API's default too
        show_default=True,
        metavar="SECONDS",
        help="Give up (exit 8) after waiting this long for a lock of the store that another process holds.",
    ),
    Option("--timeout", kind=Limit("seconds", parse_seconds), metavar="SECONDS", help="Bound the network phase of fetch, sync, lock and list or show --remote; exit 4 when it expires."),
    Option(
        "--insecure-registry",
        dest="insecure_registries",
        kind=Limit("registry", parse_registry_host),
        multiple=True,
        metavar="HOST[:PORT]",
        help="Speak plain http to this registry, though not on this machine (repeatable).",
    ),
)

# Options several commands share, declared once.
_VERIFY = Option("--verify", kind=FLAG, help="First check the files against the xxh3 recorded when they were published (exit 5 if one changed).")
_CONNECTIONS = Option("--connections", kind=Integer(*CONNECTIONS), default=8, show_default=True, help="Parallel connections for a large blob.")
_RETRIES = Option("--retries", kind=Integer(*RETRIES), default=5, show_default=True, help="Retries of a transient failure.")
_CA_BUNDLE = Option("--ca-bundle", kind=FsPath(exists=True, dir_okay=False, as_path=False), help="Trust this CA bundle for HTTPS.")
_PROGRESS = Option("--progress", kind=Choice(actions.PROGRESS_MODES), dest="progress_mode", help="Progress on stderr [default: bar on a terminal].")
# list and show: a remote to read instead of this store (one, unlike fetch's --remote, which is tried in order with others).
_READ_REMOTE = Option("--remote", metavar="URL", help="Read this remote (http(s)://, file:// or a path) instead of the store: its index and manifests, never a file.")
_LOCKFILE = Option("--lockfile", kind=FsPath(dir_okay=False), default="odai.lock", show_default=True, help="The lockfile.")
# hf://ORG/REPO[@REVISION] among fetch's and lock's references: which files, and the model's name.
_HUB = (
    Option("--include", dest="include", multiple=True, metavar="GLOB", help="With hf://: only the files matching GLOB (repeatable)."),
    Option("--exclude", dest="exclude", multiple=True, metavar="GLOB", help="With hf://: not the files matching GLOB (repeatable)."),
    Option("--as", dest="as_", metavar="NAME[:TAG]", help="With hf://: the model's name [default: hf/org/repo:REVISION]."),
)

COMMANDS = (
    Command(
        "add",
        actions.add,
        """Import files and directories as the model NAME[:TAG]; print its path.

        A file is stored under its base name; a directory contributes its contents.
        Each file is cloned where the filesystem can (no byte copied), else copied.
        """,
        Argument("name"),
        Argument("paths", FsPath(), many=True),
        Option("--follow-links", kind=FLAG, help="Also add what symbolic links lead to outside the directory being added."),
        Option("--move", kind=FLAG, help="Move the files into the store (no copy on one filesystem); they are gone from PATH once the model is named."),
        _PROGRESS,
    ),
    Command(
        "list",
        actions.list_,
        "List names: name:tag, manifest digest, size, file count.",
        Option("--size", kind=FLAG, dest="sizes", help="Also the bytes each model alone holds (what rm and gc would free) and shares, and a total that counts shared files once; reads every manifest."),
        _READ_REMOTE,
        _CA_BUNDLE,
    ),
    Command("show", actions.show, "Show a model's manifest: each file's path, digest, size and presence. NAME may be a short digest, as list shows.", Argument("name"), _READ_REMOTE, _CA_BUNDLE),
    Command(
        "path",
        actions.path,
        "Print the model's directory (exit 3 if unknown or incomplete). No network. NAME may be a short digest, as list shows.",
        Argument("name"),
        Option("--file", metavar="F", help="Print the path of this file of the model instead."),
        _VERIFY,
        Option(
            "--lockfile",
            kind=FsPath(dir_okay=False),
            help="Resolve a NAME[:TAG] it pins to its pinned manifest [default: odai.lock in this directory or the nearest parent that has one].",
        ),
    ),
    Command("rm", actions.rm, "Drop names (a short digest: its model's one name). Their files stay until 'gc'.", Argument("names", many=True)),
    Command(
        "tag",
        actions.tag,
        """Name the model SOURCE (NAME[:TAG] or NAME@sha256:<hex>) also NEW-NAME[:TAG].

        Only index.json (and its previous version) changes: both names point at the same manifest. A model NEW-NAME named before loses that name.
        """,
        Argument("source"),
        Argument("new", metavar="NEW-NAME[:TAG]"),
    ),
    Command(
        "gc",
        actions.gc,
        "Delete blobs, manifests and views that no name or gc root needs.",
        Option("--dry-run", kind=FLAG, help="Only print what would be freed."),
        Option("--partials", kind=FLAG, help="Also delete partial downloads of dead processes, which a fetch would resume."),
    ),
    Command(
        "verify",
        actions.verify,
        "Re-hash blobs; move corrupt ones to quarantine (exit 5 if any).",
        Argument("names", many=True, required=False),
        Option("--fast", kind=FLAG, help="Check the xxh3-128 recorded at publish time instead of SHA-256."),
    ),
    Command(
        "doctor",
        actions.doctor,
        "Check the whole store, hashing no blob; say what each problem means (exit 5 if any).",
        Option("--repair", kind=FLAG, help="Fix what can be fixed without losing verified data, then check again."),
    ),
    Command("du", actions.du, "Show the filesystem's size and free space, and what the store uses."),
    Command(
        "fetch",
        actions.fetch,
        """Fetch models from remotes; print one model path per NAME, in order.

        NAME is NAME[:TAG] or NAME@sha256:<hex>. A model complete in the store and
        named by digest needs no network at all. hf://ORG/REPO[@REVISION] is the
        files of a Hugging Face repository (on $HF_ENDPOINT if set), named
        hf/org/repo:REVISION unless --as names it.
        """,
        Argument("names", many=True, required=False),
        Option("--remote", dest="remotes", multiple=True, metavar="URL", help="A remote store (http(s)://, file:// or a path); repeat to try several in order."),
        Option("--url", metavar="URL", help="Fetch one file from any URL as a one-file model NAME."),
        Option("--sha256", metavar="HEX", help="With --url: the file's SHA-256."),
        Option("--filename", metavar="F", help="With --url: the file's name in the model [default: from the URL]."),
        *_HUB,
        _CONNECTIONS,
        _RETRIES,
        Option("--limit-rate", kind=Limit("rate", parse_rate), metavar="RATE", help="Cap the total rate, e.g. 10M (bytes/s)."),
        _CA_BUNDLE,
        _PROGRESS,
    ),
    Command(
        "push",
        actions.push,
        """Push a model of the store to an OCI registry; print its manifest digest.

        DEST is oci://HOST[:PORT]/REPOSITORY:TAG, or oci://HOST[:PORT]/NAMESPACE
        to push NAME:TAG (or --as NAME[:TAG]) as repository NAMESPACE/NAME.
        Blobs the registry holds are skipped; a tag that names the same
        manifest already sends nothing.
        """,
        Argument("name"),
        Argument("dest"),
        Option("--as", dest="as_", metavar="NAME[:TAG]", help="The name and tag under a namespace DEST [default: the model's]."),
        Option("--format", kind=Choice(PUSH_FORMATS), default="odai", show_default=True, help="The manifest: the store's own, or a CNCF ModelPack one."),
        _RETRIES,
        _CA_BUNDLE,
        _PROGRESS,
    ),
    Command(
        "serve",
        actions.serve,
        "Serve this store as a remote (GET/HEAD, Range); print its URL, then serve until interrupted.",
        Option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        Option("--port", kind=Integer(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one."),
        Option("--read-only", kind=FLAG, help="Serve a store on read-only media: never create or change anything in it."),
    ),
    Command(
        "lock",
        actions.lock,
        """Pin NAME[:TAG]... (or hf://ORG/REPO[@REVISION]) to their current manifests in the lockfile (network).

        The lockfile is sorted and has no timestamps: locking unchanged models
        leaves it byte-identical. It is registered as a gc root of the store.
        """,
        Argument("names", many=True, required=False),
        _LOCKFILE,
        Option("--check", kind=FLAG, help="Resolve the pins again; exit 7 listing every tag that moved."),
        Option("--upgrade", kind=FLAG, help="Resolve the pins (all, or each NAME's) again on their pinned remotes, and pin what they designate now."),
        Option("--remote", dest="remotes", multiple=True, metavar="URL", help="Resolve on this remote (repeatable)."),
        *_HUB,
        _CA_BUNDLE,
    ),
    Command(
        "sync",
        actions.sync,
        """Make exactly the pinned models present; print each one's path.

        All pins, or those of each NAME (any tag), NAME:TAG or NAME@DIGEST. Never looks a tag up; with every pin present it sends no request at all.
        """,
        Argument("names", many=True, required=False, metavar="[NAME[:TAG]|NAME@DIGEST]..."),
        _LOCKFILE,
        Option("--remote", dest="remotes", multiple=True, metavar="URL", help="Fetch from this remote instead of the pinned one."),
        _CONNECTIONS,
        _RETRIES,
        _CA_BUNDLE,
        _PROGRESS,
        _VERIFY,
    ),
    Command(
        "log",
        actions.log,
        "Show the store's history, oldest first: each model that fetch, sync or add brought in or failed to, from where, how fast.",
        Argument("name", required=False, metavar="[NAME[:TAG]]"),
        Option("--limit", kind=Integer(0), metavar="N", help="Only the newest N records."),
    ),
    Command(
        "roots",
        actions.roots,
        "List the lockfiles registered as gc roots; a stale one (its lockfile gone or unreadable) keeps its models 30 days after its last sync or lock.",
        Option("--prune", kind=FLAG, help="First drop the stale roots, so that the next gc frees what only they keep."),
    ),
    Command(
        "export",
        actions.export,
        """Materialize a model's files under DEST with their own names (read-only).
        NAME may be a short digest, as list shows.

        \b
        The default, --link auto, clones each file where the filesystem can
        (a reflink: no byte copied) and copies it elsewhere: an edit of an
        exported file never reaches the store. hardlink and symlink give the
        store's blob itself: whoever can write the exported file (root, as in
        containers and CI, or its owner after chmod u+w; vim then writes in
        place) changes that blob for every model that uses it.
        'odai-store verify --fast' finds such a change.

        \b
        With --layout hf-cache, the model goes into a Hugging Face cache
        instead of DEST, as huggingface_hub lays it out, for its tools to load
        offline: blobs are the store's (auto: a reflink, else a hardlink, else a
        symlink), snapshots link to them, refs/REVISION names the commit.
        """,
        Argument("name"),
        Argument("dest", FsPath(file_okay=False, as_path=False), required=False),  # as given: an empty DEST is refused, not read as "."
        Option(
            "--link",
            kind=Choice(LINK_MODES),
            default="auto",
            show_default=True,
            help="How files are made: auto (a reflink, else a copy), reflink, copy; or the blob itself, at the risk above: hardlink, symlink.",
        ),
        Option("--layout", kind=Choice(("files", "hf-cache")), default="files", show_default=True, help="files under DEST, or hf-cache: a Hugging Face cache."),
        Option("--cache-dir", kind=FsPath(file_okay=False, as_path=False), metavar="DIR", help="With hf-cache: the cache [default: huggingface_hub's, from HF_HUB_CACHE or HF_HOME]."),
        Option("--repo", metavar="ORG/REPO", help="With hf-cache: the repository [default: the one the model was fetched from]; required for a model not from the Hub."),
        Option("--revision", metavar="REV", help="With hf-cache: the branch or tag whose ref names the model's commit [default: main]."),
    ),
    Command(
        "import-hf-cache",
        actions.import_hf_cache,
        """Import the models of a Hugging Face cache, each snapshot a named model; print each one's path.

        Every file is checked against its blob's name (SHA-256, or git blob SHA-1)
        before anything is named. Each snapshot is named hf/org/repo:REVISION as
        fetch hf://ORG/REPO@REVISION names it. REPO (ORG/REPO): only these.
        """,
        Argument("repos", many=True, required=False, metavar="[ORG/REPO]..."),
        Option("--cache-dir", kind=FsPath(file_okay=False, as_path=False), metavar="DIR", help="The cache [default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub]."),
        Option("--link", kind=FLAG, help="Then make the cache's files hard links to the store's blobs, so the disk holds each once (where one filesystem holds both)."),
    ),
    Command(
        "init",
        actions.init,
        """Create a store (at DIRECTORY, else the usual location) and print its path.

        \b
        A shared store (--shared) trusts every member of its group: any member
        can change or delete the models of the others (rewrite or delete
        blobs, move names, plant views). Share a store only among
        people who trust each other. root, or a service account, must not run
        odai-store on a shared store whose members it does not trust.
        'path --verify' and 'sync --verify' notice a changed file
        (spec/locking.md#trust).
        """,
        Argument("directory", FsPath(file_okay=False), required=False),
        Option("--shared", kind=FLAG, dest="shared_here", help="Group-writable with the setgid bit, for every member of the group (read the trust note above)."),
    ),
)

BY_NAME = {command.name: command for command in COMMANDS}
