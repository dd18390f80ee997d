"""Read-only listings of a run's files and artifacts, shaped like the official SDK's.

`Files` and `RunArtifacts` page through the ``RunFiles``, ``RunOutputArtifacts`` and
``RunInputArtifacts`` documents (`connector.remote.queries`) as the SDK's paginators do: they are
iterators (``next(files)``), indexable (``files[0]``, ``files[1:3]``, loading pages only as far as
needed), sized (``len()`` is the server's ``fileCount`` / ``totalCount``, asked with the first page),
with ``more``, ``cursor`` and ``per_page``. Their items, `File` and `Artifact`, expose the attributes
the SDK's ``File`` and ``Artifact`` read from the same answers, with the same values, and nothing that
would download contents or change the server: no ``download``, ``delete``, ``manifest``,
``logged_by`` or ``used_by``.

>>> f = File({"name": "output.log", "sizeBytes": "12", "mimetype": "text/plain", "updatedAt": None})
>>> f.name, f.size, f.size_bytes, f
('output.log', 12, '12', <File output.log (text/plain) 12.0B>)
"""

from __future__ import annotations

import datetime as _dt
import json
import urllib.parse
from collections.abc import Iterable
from typing import Any, Generic, Literal, TypeVar, overload

from ..core.runpath import RunRef
from ..errors import ConfigurationError, NotFoundError, ProtocolError
from .queries import document
from .transport import Transport

T = TypeVar("T")

#: A listing gives up after this many pages in a row with no item but ``hasNextPage`` true.
MAX_EMPTY_PAGES = 10
Direction = Literal["logged", "used"]
#: The GraphQL field and document of each direction.
DIRECTIONS: dict[str, tuple[str, str]] = {
    "logged": ("outputArtifacts", "run_output_artifacts"),
    "used": ("inputArtifacts", "run_input_artifacts"),
}


def _snake_to_camel(name: str) -> str:
    camel = "".join(part.title() for part in name.split("_"))
    return camel[:1].lower() + camel[1:]


def human_size(size: float) -> str:
    """A byte count as the SDK prints it in ``repr(File)`` (powers of two).

    >>> human_size(12), human_size(2048), human_size(3 * 2**20 + 1)
    ('12.0B', '2.0KiB', '3.0MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            return f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def is_version_alias(alias: str) -> bool:
    """Whether an alias is a version (``v3``), as the SDK tells them apart.

    >>> is_version_alias("v12"), is_version_alias("latest"), is_version_alias("v")
    (True, False, False)
    """
    return len(alias) >= 2 and alias[0] == "v" and alias[1:].isnumeric()


class File:
    """One file of a run (the SDK's ``File``, read-only): `name`, `size`, `mimetype`, `md5`
    (base64), `updated_at`, `url`, `direct_url`, `id`, `path_uri`, and every field of the server's
    answer by its GraphQL or snake_case name (``file.sizeBytes``, ``file.size_bytes``)."""

    def __init__(self, attrs: dict[str, Any], run: Any = None) -> None:
        self._attrs = dict(attrs)
        self.run = run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attrs = self.__dict__.get("_attrs") or {}
        for key in (_snake_to_camel(name), name):
            if key in attrs:
                return attrs[key]
        raise AttributeError(f"'File' object has no attribute {name!r}")

    @property
    def name(self) -> str:
        return str(self._attrs.get("name"))

    @property
    def size(self) -> int:
        """The size in bytes (0 when the server names none)."""
        size = self._attrs.get("sizeBytes")
        return int(size) if size is not None else 0

    @property
    def path_uri(self) -> str:
        """The file's ``s3://`` URI, or its direct URL for a reference file, else ``""`` (as the SDK,
        without its warnings).

        >>> File({"directUrl": "https://b.s3.amazonaws.com/k/f.txt", "url": "x"}).path_uri
        's3://b/k/f.txt'
        """
        direct = self._attrs.get("directUrl")
        if not direct:
            return ""
        if direct == self._attrs.get("url"):
            return str(direct)
        parsed = urllib.parse.urlparse(direct)
        if parsed.scheme not in ("http", "https") or "s3" not in direct or "amazonaws.com" not in direct:
            return ""
        return f"s3://{parsed.netloc.split('.')[0]}/{parsed.path.lstrip('/')}"

    def to_dict(self) -> dict[str, Any]:
        """One row of the files table (without the run's identity columns)."""
        return {
            "name": self.name,
            "size": self.size,
            "mimetype": self._attrs.get("mimetype"),
            "md5": self._attrs.get("md5"),
            "updated_at": self._attrs.get("updatedAt"),
            "url": self._attrs.get("url"),
            "direct_url": self._attrs.get("directUrl"),
            "id": self._attrs.get("id"),
        }

    def __repr__(self) -> str:
        return f"<File {self.name} ({self._attrs.get('mimetype')}) {human_size(self.size)}>"


class Artifact:
    """One artifact version a run logged or used (the SDK's ``Artifact``, read attributes only).

    `name` is ``collection:vN``; `aliases` leave out the version aliases (``v0``: see `version`), as
    the SDK's; `metadata` is a dict, `ttl` a `datetime.timedelta` or None, `history_step` the step
    the SDK derives (``historyStep - 1``, at least 0). `url` is built as the SDK builds an artifact's
    page address, without the request the SDK makes for it.
    """

    def __init__(self, node: dict[str, Any], *, app_url: str = "", run: Any = None) -> None:
        self._node = node
        self._app_url = app_url.rstrip("/")
        self.run = run
        sequence = node["artifactSequence"]
        project = sequence["project"]
        self._entity: str = project["entity"]["name"]
        self._project: str = project["name"]
        self._collection: str = sequence["name"]
        self._version_index: int | None = node.get("versionIndex")
        aliases = [
            a["alias"]
            for a in node.get("aliases") or []
            if (coll := a.get("artifactCollection"))
            and (proj := coll.get("project"))
            and proj["entity"]["name"] == self._entity
            and proj["name"] == self._project
            and coll.get("name") == self._collection
        ]
        versions = [a for a in aliases if is_version_alias(a)]
        self._version = versions[0] if len(versions) == 1 else f"v{self._version_index}"
        self._aliases = [a for a in aliases if not is_version_alias(a)]

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} ({self.type})>"

    @property
    def id(self) -> str:
        return str(self._node["id"])

    @property
    def entity(self) -> str:
        return self._entity

    @property
    def project(self) -> str:
        return self._project

    @property
    def name(self) -> str:
        """``collection:vN``."""
        return f"{self._collection}:{self._version}"

    @property
    def collection_name(self) -> str:
        return self._collection

    @property
    def qualified_name(self) -> str:
        return f"{self._entity}/{self._project}/{self.name}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def version_index(self) -> int | None:
        return self._version_index

    @property
    def source_entity(self) -> str:
        return self._entity

    @property
    def source_project(self) -> str:
        return self._project

    @property
    def source_name(self) -> str:
        return f"{self._collection}:v{self._version_index}"

    @property
    def source_qualified_name(self) -> str:
        return f"{self._entity}/{self._project}/{self.source_name}"

    @property
    def source_version(self) -> str:
        return f"v{self._version_index}"

    @property
    def is_link(self) -> bool:
        """Always False: a run's artifacts are listed from their source collection."""
        return False

    @property
    def type(self) -> str:
        return str(self._node["artifactType"]["name"])

    @property
    def description(self) -> str | None:
        return self._node.get("description")

    @property
    def metadata(self) -> dict[str, Any]:
        raw = self._node.get("metadata")
        parsed = json.loads(raw) if isinstance(raw, str) and raw else raw
        return dict(parsed) if isinstance(parsed, dict) else {}

    @property
    def ttl(self) -> _dt.timedelta | None:
        seconds = self._node.get("ttlDurationSeconds")
        return _dt.timedelta(seconds=seconds) if isinstance(seconds, int) and seconds > 0 else None

    @property
    def aliases(self) -> list[str]:
        return list(self._aliases)

    @property
    def tags(self) -> list[str]:
        return [t["name"] for t in self._node.get("tags") or []]

    @property
    def state(self) -> str:
        return str(self._node.get("state"))

    @property
    def digest(self) -> str:
        return str(self._node.get("digest"))

    @property
    def size(self) -> int:
        return int(self._node.get("size") or 0)

    @property
    def commit_hash(self) -> str | None:
        return self._node.get("commitHash")

    @property
    def file_count(self) -> int:
        return int(self._node.get("fileCount") or 0)

    @property
    def created_at(self) -> str:
        return str(self._node.get("createdAt"))

    @property
    def updated_at(self) -> str:
        return str(self._node.get("updatedAt") or self._node.get("createdAt"))

    @property
    def history_step(self) -> int | None:
        step = self._node.get("historyStep")
        return None if step is None else max(0, int(step) - 1)

    @property
    def url(self) -> str:
        """The artifact's page in the W&B UI (``<app>/entity/project/artifacts/type/name/version``)."""
        if not self._app_url:
            return ""
        parts = (self._entity, self._project, "artifacts", urllib.parse.quote(self.type),
                 urllib.parse.quote(self._collection), self._version)  # fmt: skip
        return self._app_url + "/" + "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """One row of the artifacts table (without the run's identity columns)."""
        return {
            "id": self.id,
            "name": self.name,
            "collection": self._collection,
            "type": self.type,
            "version": self.version,
            "aliases": self.aliases,
            "tags": self.tags,
            "digest": self.digest,
            "size": self.size,
            "file_count": self.file_count,
            "state": self.state,
            "description": self.description,
            "metadata": json.dumps(self.metadata),
            "commit_hash": self.commit_hash,
            "history_step": self.history_step,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "artifact_entity": self._entity,
            "artifact_project": self._project,
            "url": self.url,
        }


class _Paginated(Generic[T]):
    """The SDK's paginator contract over one run's connection (`_fetch` gives one page)."""

    def __init__(self, transport: Transport, ref: RunRef, per_page: int, run: Any) -> None:
        if not isinstance(per_page, int) or isinstance(per_page, bool) or per_page < 1:
            raise ConfigurationError(f"per_page must be a positive integer, got {per_page!r}")
        self._transport = transport
        self.ref = ref
        self.run = run
        self.per_page = per_page
        self.objects: list[T] = []
        self.index = -1
        self._total: int | None = None
        self._loaded_once = False
        self._more = True
        self._cursor: str | None = None
        self._cursors: set[str] = set()
        self._empty = 0

    # -- subclass hooks -------------------------------------------------------------------------
    _what = "items"

    def _fetch(self, cursor: str | None) -> tuple[list[T], str | None, bool, int]:
        raise NotImplementedError

    # -- the paginator ---------------------------------------------------------------------------
    @property
    def more(self) -> bool:
        """Whether a page is left to fetch (True before the first one)."""
        return self._more

    @property
    def cursor(self) -> str | None:
        """The cursor the next page starts after."""
        return self._cursor

    def _load_page(self) -> bool:
        if not self._more:
            return False
        items, end, more, total = self._fetch(self._cursor)
        where = f"run {self.ref.path}: the {self._what} listing"
        if more and (not end or end == self._cursor or end in self._cursors):
            raise ProtocolError(f"{where} says hasNextPage but its cursor does not advance; it would never end")
        self._empty = 0 if items else self._empty + 1
        if more and self._empty >= MAX_EMPTY_PAGES:
            raise ProtocolError(f"{where} answered {self._empty} pages without an item but hasNextPage")
        if end:
            self._cursors.add(end)
            self._cursor = end
        self._more = more
        self._total = total
        self._loaded_once = True
        self.objects.extend(items)
        return True

    def __len__(self) -> int:
        if not self._loaded_once:
            self._load_page()
        return int(self._total or 0)

    def __iter__(self) -> _Paginated[T]:
        self.index = -1
        return self

    def __next__(self) -> T:
        self.index += 1
        while len(self.objects) <= self.index:
            if not self._load_page():
                raise StopIteration
        return self.objects[self.index]

    next = __next__

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        """``x[i]`` / ``x[i:j]``: pages are loaded as far as needed (all of them for a negative
        index or an open slice)."""
        stop = index.stop if isinstance(index, slice) else index
        if stop is None or stop < 0 or (isinstance(index, slice) and (index.start or 0) < 0):
            while self._load_page():
                pass
        else:
            while stop > len(self.objects) - 1 and self._load_page():
                pass
        return self.objects[index]

    def _run_of(self, data: dict[str, Any]) -> dict[str, Any]:
        project = data.get("project")
        if project is not None and not isinstance(project, dict):
            raise ProtocolError(f"run {self.ref.path}: the answer's project is not a JSON object")
        run = (project or {}).get("run")
        if run is None:
            raise NotFoundError(f"run {self.ref.path} not found (or not visible with this API key)")
        if not isinstance(run, dict):
            raise ProtocolError(f"run {self.ref.path}: the answer's run is not a JSON object")
        return run

    def _edges(self, connection: Any) -> tuple[list[Any], str | None, bool]:
        where = f"run {self.ref.path}: the {self._what} listing"
        edges = connection.get("edges") if isinstance(connection, dict) else None
        info = connection.get("pageInfo") if isinstance(connection, dict) else None
        if not isinstance(edges, list) or not isinstance(info, dict):
            raise ProtocolError(f"{where} is not {{edges: [...], pageInfo: {{...}}}}")
        more, end = info.get("hasNextPage"), info.get("endCursor")
        if more.__class__ is not bool or not isinstance(end, str | None):
            raise ProtocolError(f"{where}'s pageInfo is {info!r:.100}, not {{endCursor, hasNextPage}}")
        nodes = []
        for edge in edges:
            node = edge.get("node") if isinstance(edge, dict) else None
            if node is not None and not isinstance(node, dict):
                raise ProtocolError(f"{where} holds {edge!r:.100}, not a node")
            if node is not None:
                nodes.append(node)
        return nodes, end, more


class Files(_Paginated[File]):
    """The files of one run (the SDK's ``Files``); `len()` is the run's ``fileCount`` (all its files,
    whatever `names` or `pattern` select, as the service and the SDK count them)."""

    _what = "files"

    def __init__(
        self,
        transport: Transport,
        ref: RunRef,
        names: list[str] | None = None,
        per_page: int = 50,
        pattern: str | None = None,
        *,
        run: Any = None,
    ) -> None:
        if names and pattern:
            raise ConfigurationError("files(): give names or a pattern, not both")
        if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
            raise ConfigurationError(f"names must be a list of file names, got {names!r}")
        super().__init__(transport, ref, per_page, run)
        self.names = list(names or [])
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"<Files {self.ref.path}>"

    def _fetch(self, cursor: str | None) -> tuple[list[File], str | None, bool, int]:
        data = self._transport.execute(
            document("run_files"),
            {
                "project": self.ref.project, "entity": self.ref.entity, "name": self.ref.run_id,
                "fileNames": self.names, "upload": False, "pattern": self.pattern,
                "fileLimit": self.per_page, "fileCursor": cursor,
            },
        )  # fmt: skip
        run = self._run_of(data)
        count = run.get("fileCount")
        if count is not None and (count.__class__ is not int or count < 0):
            raise ProtocolError(f"run {self.ref.path}: fileCount is {count!r:.60}, not a count")
        nodes, end, more = self._edges(run.get("files"))
        for node in nodes:
            if not isinstance(node.get("name"), str):
                raise ProtocolError(f"run {self.ref.path}: the files listing holds {node!r:.100}, not a file")
        return [File(node, self.run) for node in nodes], end, more, count or 0


class RunArtifacts(_Paginated[Artifact]):
    """The artifacts one run logged (``mode="logged"``) or used (``"used"``): the SDK's
    ``RunArtifacts``; `len()` is the server's ``totalCount``."""

    def __init__(
        self,
        transport: Transport,
        ref: RunRef,
        mode: str = "logged",
        per_page: int = 100,
        *,
        app_url: str = "",
        run: Any = None,
    ) -> None:
        if mode not in DIRECTIONS:
            raise ConfigurationError(f"mode must be 'logged' or 'used', got {mode!r}")
        super().__init__(transport, ref, per_page, run)
        self.mode = mode
        self._what = f"{mode} artifacts"
        self._app_url = app_url

    def __repr__(self) -> str:
        return f"<RunArtifacts {self.ref.path} ({self.mode})>"

    def _fetch(self, cursor: str | None) -> tuple[list[Artifact], str | None, bool, int]:
        data = self._transport.execute(
            document(DIRECTIONS[self.mode][1]),
            {"entity": self.ref.entity, "project": self.ref.project, "run": self.ref.run_id,
             "cursor": cursor, "perPage": self.per_page},
        )  # fmt: skip
        connection = self._run_of(data).get("artifacts")
        total = connection.get("totalCount") if isinstance(connection, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ProtocolError(f"run {self.ref.path}: the {self._what} totalCount is {total!r:.60}, not a count")
        nodes, end, more = self._edges(connection)
        out = []
        for node in nodes:
            try:
                if node["artifactSequence"]["project"] is None:
                    continue  # the SDK skips artifacts of a project it cannot see
                out.append(Artifact(node, app_url=self._app_url, run=self.run))
            except (KeyError, TypeError) as exc:
                raise ProtocolError(
                    f"run {self.ref.path}: the {self._what} listing holds {node!r:.100}, not an artifact"
                ) from exc
        return out, end, more, total


def listing_rows(items: Iterable[Any], ref: RunRef, **columns: Any) -> list[dict[str, Any]]:
    """Rows of a files or artifacts table: ``entity, project, run_id``, `columns`, then each item's
    `to_dict`.

    >>> listing_rows([File({"name": "a", "sizeBytes": 1})], RunRef("e", "p", "r"))[0]["run_id"]
    'r'
    """
    ids = {"entity": ref.entity, "project": ref.project, "run_id": ref.run_id, **columns}
    return [{**ids, **item.to_dict()} for item in items]
