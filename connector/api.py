"""`Api`, `Run`, `Runs`: entry points shaped like the official SDK's public API.

Identity follows the SDK: `Run.id` is the short run id (GraphQL `name`), `Run.name` the display name,
`Run.storage_id` the GraphQL `id`, `Run.path` ``[entity, project, id]``.

Listing a project (`Api.runs`, ``lazy=True`` as in the SDK) asks the light run fields only; a `Run`
from such a listing fetches the heavy ones (`LISTING_OMITS`: config, summary, system metrics, history
keys) with one `run` query the first time one of them is needed, then keeps them. ``lazy=False``
lists every field at once (what the engines and the exporter use: they need them for every run).

>>> api = Api(api_key="k" * 40, base_url="http://127.0.0.1:9")
>>> api
Api(base_url='http://127.0.0.1:9')
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .config import Settings
from .core.decode import DecodePool
from .core.runpath import RunRef, is_local_path, parse_project_path
from .core.scan import DEFAULT_CONCURRENCY, DEFAULT_PAGE_SIZE, HistoryScan
from .core.source import HistorySource
from .core.values import check_row
from .errors import ConfigurationError, NotFoundError, ProtocolError, RowError
from .remote.files_artifacts import File, Files, RunArtifacts
from .remote.queries import LISTING_OMITS, OPERATION_NAMES, document
from .remote.source import ApiSource, check_run_attrs
from .remote.transport import RetryPolicy, Transport

log = logging.getLogger("connector.api")

if TYPE_CHECKING:
    from .core.rundata import RunData

#: Runs listings give up after this many pages in a row with no run but ``hasNextPage`` true.
MAX_EMPTY_PAGES = 10

#: Stand-ins for the fields a light listing leaves out, so that `check_run_attrs` checks the others
#: as it checks a full run: null JSON text, and history keys consistent with any line count.
_OMITTED_STAND_INS: dict[str, Any] = {
    name: {"lastStep": 0} if name == "historyKeys" else None for name in LISTING_OMITS
}
#: The JSON-text fields a `Run` parses (config, summary, system metrics).
_JSON_FIELDS = ("config", "summaryMetrics", "systemMetrics")


def _check_listed_run(node: Any, path: str) -> dict[str, Any]:
    """A run of a light runs listing, checked like a full run on the fields the listing asks for;
    any of `LISTING_OMITS` it holds anyway is dropped (not asked for, so not trusted).

    >>> from connector.remote.source import RUN_FIELDS
    >>> node = {name: None for name in RUN_FIELDS if name not in LISTING_OMITS}
    >>> listed = _check_listed_run({**node, "projectId": "1", "name": "r", "config": "{}"}, "e/p/r")
    >>> listed["name"], "config" in listed
    ('r', False)
    """
    if not isinstance(node, dict):
        return check_run_attrs(node, path)  # raises: not a JSON object
    listed = {name: value for name, value in node.items() if name not in LISTING_OMITS}
    check_run_attrs({**listed, **_OMITTED_STAND_INS}, path)
    return listed


def _json_field(value: Any, where: str | None = None, name: str = "") -> dict[str, Any]:
    """A JSONString field (config, summaryMetrics) as a dict, leniently as the SDK: text that is not
    a JSON object gives ``{}``. With `where` (a server's answer), a value nested deeper or holding
    more keys than the row limits of `connector.core.values` raises `ProtocolError`."""
    if isinstance(value, dict):
        parsed: Any = value
    elif not value:
        return {}
    else:
        try:
            parsed = json.loads(value)
        except RecursionError as exc:
            raise ProtocolError(f"run {where}: the run's {name} nests too deep") from exc
        except (TypeError, ValueError):
            try:
                parsed = json.loads(value, strict=False)
            except RecursionError as exc:
                raise ProtocolError(f"run {where}: the run's {name} nests too deep") from exc
            except (TypeError, ValueError):
                return {}
    if not isinstance(parsed, dict):
        return {}
    if where is not None:
        try:
            check_row(parsed)
        except RowError as exc:
            raise ProtocolError(f"run {where}: the run's {name}: {exc}") from exc
    return parsed


_INTERNAL_CONFIG_KEYS = ("_wandb", "wandb_version")


def _unwrap_config(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, rawconfig)`` as the SDK: ``{"value": v, "desc": ...}`` entries unwrapped; `config`
    without the internal keys (``_wandb``, ``wandb_version``), `rawconfig` with them (and all the rest).

    >>> _unwrap_config({"lr": {"value": 0.1, "desc": None}, "_wandb": {"value": {"t": 1}}})
    ({'lr': 0.1}, {'_wandb': {'t': 1}, 'lr': 0.1})
    """
    config: dict[str, Any] = {}
    internal: dict[str, Any] = {}
    for key, value in raw.items():
        target = internal if key in _INTERNAL_CONFIG_KEYS else config
        target[key] = value["value"] if isinstance(value, dict) and "value" in value else value
    return config, {**internal, **config}


def _snake_to_camel(name: str) -> str:
    camel = "".join(part.title() for part in name.split("_"))
    return camel[:1].lower() + camel[1:]


def app_url(base_url: str) -> str:
    """The W&B UI address for an API address, as the SDK derives it (`WANDB_APP_URL` first).

    >>> app_url("https://api.wandb.ai"), app_url("http://127.0.0.1:8080/")
    ('https://forge.coreweave.com/wandb', 'http://127.0.0.1:8080')
    """
    override = os.environ.get("WANDB_APP_URL")
    if override:
        return override.strip("/")
    host = urllib.parse.urlsplit(base_url).hostname
    for forge, api in (("forge.coreweave.com", "api.wandb.ai"), ("qa.forge.coreweave.com", "api.qa.wandb.ai")):
        if host in (forge, f"api.{forge}", api):
            return f"https://{forge}/wandb"
    if "://api.wandb.test" in base_url:
        return base_url.replace("://api.", "://app.").strip("/")
    if "://api.wandb." in base_url:
        return base_url.replace("://api.", "://").strip("/")
    if "://api." in base_url:
        return base_url.replace("://api.", "://app.").strip("/")
    return base_url.rstrip("/")


class User(dict[str, Any]):
    """A user (`Api.viewer`, `Run.user`): a dict of the server's fields, readable as attributes
    like the SDK's ``User`` (``viewer.entity``, ``run.user.username``). Calling it returns itself,
    so the older ``api.viewer()["entity"]`` keeps working."""

    def __getattr__(self, name: str) -> Any:
        for key in (name, _snake_to_camel(name)):
            if key in self:
                return self[key]
        raise AttributeError(f"user has no attribute {name!r}")

    def __call__(self) -> User:
        return self


PAGES_PER_PROCESS = 3
"""Default pages in flight per decoding worker process (``Api(processes=N)``)."""


class Api:
    """Entry point to the W&B API (or to local `.wandb` runs, which need no server).

    Settings resolve as in the SDK: arguments, then `WANDB_API_KEY`, `WANDB_BASE_URL`,
    `WANDB_ENTITY`, `WANDB_PROJECT`, then the wandb settings file and `~/.netrc`.
    The positional arguments are the SDK's, ``Api(overrides=None, timeout=None, api_key=None)`` with
    ``overrides={"base_url": ..., "entity": ..., "project": ...}``; `base_url`, `entity`, `project`
    are also keywords. (The older ``Api(api_key, base_url)`` form, two strings, still works.)

    `processes` (default 0): worker processes that decode live history pages into Arrow for the
    scans' `to_batches()`/`to_arrow()`/`to_polars()`, so that one scan uses more than one core
    (`connector.core.decode`); started on the first such scan, stopped by `close()` or at exit. From
    a script, create it under ``if __name__ == "__main__":`` (the workers are started with ``spawn``).
    `concurrency` (pages in flight per scan) defaults to 3, and with `processes` to
    ``PAGES_PER_PROCESS × processes`` (6 with 2): decoding no longer competes with fetching for the
    GIL, so more pages in flight hide latency at no cost (`benchmarks/results/decode_profile.md`).
    """

    def __init__(
        self,
        overrides: Mapping[str, Any] | str | None = None,
        timeout: float | str | None = None,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        entity: str | None = None,
        project: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        processes: int = 0,
    ) -> None:
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 0:
            raise ConfigurationError(f"processes must be a whole number >= 0, got {processes!r}")
        if isinstance(overrides, str):  # the older Api(api_key, base_url) form
            if api_key is not None:
                raise ConfigurationError("Api() got the API key twice (first argument and api_key=)")
            api_key, overrides = overrides, None
            if isinstance(timeout, str):
                if base_url is not None:
                    raise ConfigurationError("Api() got base_url twice (second argument and base_url=)")
                base_url, timeout = timeout, None
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigurationError(f"overrides must be a dict, got {type(overrides).__name__}")
        if isinstance(timeout, (str, bool)):
            raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
        overrides = dict(overrides or {})
        self.settings = Settings.resolve(
            api_key=api_key,
            base_url=base_url or overrides.get("base_url"),
            entity=entity or overrides.get("entity"),
            project=project or overrides.get("project"),
        )
        read_timeout = float(timeout) if timeout else 60.0
        self.transport = Transport(
            self.settings.base_url,
            self.settings.api_key,
            timeout=(min(10.0, read_timeout), read_timeout),
            retry=retry,
        )
        if concurrency is None:  # pages in flight: more keep decoding workers busy (measured)
            concurrency = max(DEFAULT_CONCURRENCY, PAGES_PER_PROCESS * processes)
        self.concurrency = concurrency
        #: Worker processes decoding live pages into Arrow for this Api's scans (`to_batches`,
        #: `to_arrow`...), started on first use; None: decoded in this process (`processes=0`).
        self.decode_pool = DecodePool(processes) if processes else None
        self._default_entity: str | None = None

    def __repr__(self) -> str:
        return f"Api(base_url={self.settings.base_url!r})"

    def close(self) -> None:
        """Stop the decoding worker processes (``processes=``), if any were started."""
        if self.decode_pool is not None:
            self.decode_pool.close()

    @property
    def default_entity(self) -> str | None:
        """`WANDB_ENTITY`, or the entity of the API key's user (asked once)."""
        if self.settings.entity:
            return self.settings.entity
        if self._default_entity is None:
            data = self.transport.execute(document("default_entity"))
            viewer = data.get("viewer")
            entity = viewer.get("entity") if isinstance(viewer, dict) else None
            if not isinstance(viewer, dict | None) or not isinstance(entity, str | None):
                raise ProtocolError(f"the server answered viewer {viewer!r:.100}, not {{id, entity}}")
            self._default_entity = entity
        return self._default_entity

    @property
    def api_key(self) -> str | None:
        """The API key in use (the SDK's attribute)."""
        return self.settings.api_key

    @property
    def viewer(self) -> User:
        """The user the API key belongs to (also checks the key): a property, as in the SDK; a `User`
        dict with attribute access (``api.viewer.entity``). ``api.viewer()`` still works."""
        data = self.transport.execute(document("viewer"), None, OPERATION_NAMES["viewer"])
        viewer = data.get("viewer")
        if viewer is None:
            raise NotFoundError("the server knows no user for this API key")
        if not isinstance(viewer, dict):
            raise ProtocolError(f"the server answered viewer {viewer!r:.100}, not a JSON object")
        return User(viewer)

    def ref(self, path: str) -> RunRef:
        """The run a path or URL names, without loading it; an entity-less path takes the default
        entity (asked of the server only then), a project-less one `WANDB_PROJECT`.

        >>> Api(api_key="k" * 40, base_url="http://127.0.0.1:9").ref("https://wandb.ai/e/p/runs/abc")
        RunRef(entity='e', project='p', run_id='abc')
        """
        return RunRef.parse(
            path,
            default_entity=lambda: self.default_entity,  # asked only for entity-less paths
            default_project=self.settings.project,
        )

    def with_transport(self, transport: Transport) -> Api:
        """A copy of this `Api` (same settings) whose requests go through `transport`, e.g.
        ``api.with_transport(api.transport.with_gate(limiter))``; this one is left as it is.

        >>> api = Api(api_key="k" * 40, base_url="http://127.0.0.1:9")
        >>> other = api.with_transport(api.transport.with_gate(None))
        >>> other.settings is api.settings, other.transport is api.transport
        (True, False)
        """
        clone = copy.copy(self)
        clone.transport = transport
        return clone

    def run(self, path: str | RunRef) -> Run:
        """Load one run: ``"entity/project/run_id"``, ``"entity/project/runs/run_id"``, or a URL.

        A local `.wandb` file or run directory opens as a local run (no server needed).
        """
        if isinstance(path, RunRef):
            ref = path
        elif is_local_path(path):
            from .local import load_run

            return Run.from_run_data(load_run(path))
        else:
            ref = self.ref(str(path))
        return Run(self, ref, self._run_attrs(ref))

    def _run_attrs(self, ref: RunRef) -> dict[str, Any]:
        """Every field of one run (`RunFragment`), with one `run` query; checked."""
        data = self.transport.execute(
            document("run"),
            {"entity": ref.entity, "project": ref.project, "name": ref.run_id},
        )
        project = data.get("project")
        if (
            "project" not in data
            or not isinstance(project, dict | None)
            or (isinstance(project, dict) and "run" not in project)
        ):
            raise ProtocolError(f"run {ref.path}: the answer is not {{project: {{run: ...}}}}")
        attrs = (project or {}).get("run")
        if attrs is None:
            raise NotFoundError(f"run {ref.path} not found (or not visible with this API key)")
        return check_run_attrs(attrs, ref.path)

    def runs(
        self,
        path: str | None = None,
        filters: Mapping[str, Any] | None = None,
        order: str = "+created_at",
        per_page: int = 50,
        include_sweeps: bool = False,
        lazy: bool = True,
    ) -> Runs:
        """The runs of a project, paged lazily; `filters` are MongoDB-style, passed through.

        `path` is ``"entity/project"``, or ``"project"`` with the default entity (`WANDB_ENTITY` or
        the API key's user). With `lazy` (the SDK's default) the listing asks the light run fields;
        each run fetches the rest (`LISTING_OMITS`) with one `run` query when first needed. Without,
        the listing asks every field (for code that reads them for every run). `include_sweeps` is
        accepted for compatibility with the SDK (sweeps are not fetched).
        """
        del include_sweeps
        if path is None:
            if not (self.settings.entity or self.default_entity) or not self.settings.project:
                raise ConfigurationError("runs() needs 'entity/project' (or WANDB_ENTITY and WANDB_PROJECT)")
            path = f"{self.settings.entity or self.default_entity}/{self.settings.project}"
        if not isinstance(per_page, int) or isinstance(per_page, bool) or per_page < 1:
            raise ConfigurationError(f"per_page must be a positive integer, got {per_page!r}")
        try:
            entity, project = parse_project_path(path, default_entity=self.settings.entity or None)
        except ConfigurationError:
            if self.settings.entity or not isinstance(path, str) or "/" in path.strip().strip("/"):
                raise
            entity, project = parse_project_path(path, default_entity=self.default_entity)
        return Runs(self, entity, project, dict(filters or {}), order, per_page, lazy=lazy)


def default_api(api: Api | None = None, *, retry: RetryPolicy | None = None) -> Api:
    """`api`, or else an `Api` configured from the environment (`WANDB_API_KEY`, `WANDB_BASE_URL`,
    ...; `retry` its retry policy): what every function taking ``api=None`` uses.

    >>> api = Api(api_key="k" * 40, base_url="http://127.0.0.1:9")
    >>> default_api(api) is api
    True
    """
    return api if api is not None else Api(retry=retry)


class LazyApi:
    """`default_api` (passed through `adapt`, when given) made on the first call, then shared;
    thread-safe. For code that must not need a server until it really talks to one.

    >>> lazy = LazyApi(Api(api_key="k" * 40, base_url="http://127.0.0.1:9"))
    >>> lazy.made, lazy() is lazy(), lazy.made
    (False, True, True)
    """

    def __init__(self, api: Api | None = None, adapt: Callable[[Api], Api] | None = None) -> None:
        self._given = api
        self._adapt = adapt
        self._api: Api | None = None
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        """Whether the `Api` was made (a call succeeded)."""
        return self._api is not None

    def __call__(self) -> Api:
        with self._lock:
            if self._api is None:
                api = default_api(self._given)
                self._api = self._adapt(api) if self._adapt is not None else api
            return self._api


class Run:
    """One run: metadata plus `scan_history`, `history` and `scan`.

    `attrs` are the server's fields of the run. Those of `LISTING_OMITS` it lacks (a run from a light
    listing) are fetched with one `run` query when first needed (`config`, `summary`,
    `system_metrics`, `history_keys`, `load`, `to_dict`...), once, then kept; without an `api` they
    read as empty.
    """

    def __init__(
        self,
        api: Api | None,
        ref: RunRef,
        attrs: Mapping[str, Any],
        *,
        source: HistorySource | None = None,
    ) -> None:
        self._api = api
        self.ref = ref
        self._attrs = dict(attrs)
        self._source = source
        self._lock = threading.Lock()
        self._parsed: dict[str, Any] = {}  # field -> parsed value (config: (config, rawconfig))
        self._parsed = self._parse(self._attrs, [n for n in _JSON_FIELDS if n in self._attrs or api is None])

    def _parse(self, attrs: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        """`_parsed` plus the JSON-text fields `names` of `attrs`, parsed (and checked when they come
        from a server)."""
        where = self.ref.path if self._source is None else None  # attributes from a server's answer
        parsed = dict(self._parsed)
        for name in names:
            value = _json_field(attrs.get(name), where, name)
            parsed[name] = _unwrap_config(value) if name == "config" else value
        return parsed

    def _complete(self) -> None:
        """Fetch the fields of `LISTING_OMITS` this run lacks with one `run` query (once, whatever
        the threads asking); a no-op without an api or when nothing is missing."""
        if self._api is None or all(name in self._attrs for name in LISTING_OMITS):
            return
        with self._lock:
            missing = [name for name in LISTING_OMITS if name not in self._attrs]
            if not missing:
                return
            fresh = self._api._run_attrs(self.ref)
            # only what was missing: the listed fields (state, line count) stay as the source saw them
            attrs = {**self._attrs, **{name: fresh[name] for name in missing}}
            # parsed first: a thread that sees the fields in _attrs (and so takes no lock) finds them
            self._parsed = self._parse(attrs, [n for n in _JSON_FIELDS if n in missing])
            self._attrs = attrs

    def _json(self, name: str) -> Any:
        if name not in self._parsed:
            self._complete()
        return self._parsed[name]

    @property
    def config(self) -> dict[str, Any]:
        """The run's config, ``{"value": v}`` entries unwrapped, without the internal keys."""
        config: dict[str, Any] = self._json("config")[0]
        return config

    @property
    def rawconfig(self) -> dict[str, Any]:
        """The config with the internal keys (``_wandb``, ``wandb_version``)."""
        raw: dict[str, Any] = self._json("config")[1]
        return raw

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary metrics, as a dict."""
        summary: dict[str, Any] = self._json("summaryMetrics")
        return summary

    @property
    def system_metrics(self) -> dict[str, Any]:
        """The run's system metrics, as a dict."""
        metrics: dict[str, Any] = self._json("systemMetrics")
        return metrics

    @classmethod
    def from_run_data(cls, run: RunData) -> Run:
        """A `Run` over an in-memory run (a `.wandb` file, a test), with no server.

        >>> from connector.core.rundata import MemoryRun, RunMeta
        >>> r = Run.from_run_data(MemoryRun(RunMeta("e", "p", "abc"), rows=[{"_step": 3}]))
        >>> r.id, r.lastHistoryStep
        ('abc', 3)
        """
        from .local.source import LocalSource

        meta = run.meta
        attrs = {
            "id": None,
            "name": meta.run_id,
            "displayName": meta.display_name,
            "state": meta.state,
            "tags": list(meta.tags),
            "config": {k: {"value": v, "desc": None} for k, v in meta.config.items()},
            "summaryMetrics": dict(meta.summary),
            "createdAt": meta.created_at,
            "heartbeatAt": meta.heartbeat_at,
            "group": meta.group,
            "jobType": meta.job_type,
            "notes": meta.notes,
            "historyLineCount": len(run.steps()),
            "historyKeys": run.history_keys(),
            "user": {"name": meta.username, "username": meta.username},
        }
        return cls(None, RunRef(meta.entity, meta.project, meta.run_id), attrs, source=LocalSource(run))

    def __repr__(self) -> str:
        return f"<Run {self.ref.path} ({self.state})>"

    # -- identity and metadata ------------------------------------------------------------------

    @property
    def entity(self) -> str:
        return self.ref.entity

    @property
    def project(self) -> str:
        return self.ref.project

    @property
    def id(self) -> str:
        """The short run id (GraphQL `name`)."""
        return self.ref.run_id

    @property
    def name(self) -> str | None:
        """The display name."""
        return self._attrs.get("displayName")

    @property
    def display_name(self) -> str | None:
        """The display name (the SDK reads it through its attribute fallback)."""
        return self._attrs.get("displayName")

    @property
    def storage_id(self) -> str | None:
        return self._attrs.get("id")

    @property
    def path(self) -> list[str]:
        return [self.ref.entity, self.ref.project, self.ref.run_id]

    @property
    def state(self) -> str | None:
        return self._attrs.get("state")

    @property
    def tags(self) -> list[str]:
        return list(self._attrs.get("tags") or [])

    @property
    def created_at(self) -> str | None:
        return self._attrs.get("createdAt")

    @property
    def heartbeat_at(self) -> str | None:
        return self._attrs.get("heartbeatAt")

    @property
    def history_line_count(self) -> int | None:
        return self._attrs.get("historyLineCount")

    @property
    def historyLineCount(self) -> int | None:  # noqa: N802 - the SDK's name
        return self._attrs.get("historyLineCount")

    @property
    def notes(self) -> str | None:
        return self._attrs.get("notes")

    @property
    def group(self) -> str | None:
        return self._attrs.get("group")

    @property
    def job_type(self) -> str | None:
        return self._attrs.get("jobType")

    @property
    def sweep_name(self) -> str | None:
        return self._attrs.get("sweepName")

    @property
    def read_only(self) -> bool | None:
        return self._attrs.get("readOnly")

    @property
    def user(self) -> User | None:
        """The user who created the run (``run.user.username``), None when the server names none."""
        user = self._attrs.get("user")
        return User(user) if isinstance(user, dict) else None

    @property
    def username(self) -> str:
        """The entity, as the SDK's deprecated `Run.username` (it is not the user's name: see `user`)."""
        return self.entity

    @property
    def url(self) -> str:
        """The run's page in the W&B UI, ``<app url>/entity/project/runs/id`` (as the SDK builds it)."""
        if self._api is not None:
            base = self._api.settings.base_url
        else:
            base = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
        parts = [urllib.parse.quote(str(p), safe="") for p in (self.entity, self.project, "runs", self.id)]
        return app_url(base) + "/" + "/".join(parts)

    @property
    def summary_metrics(self) -> dict[str, Any]:
        """The run's summary as a plain dict (the same object as `summary`)."""
        return self.summary

    @property
    def json_config(self) -> str:
        """The config as the SDK's JSON string: ``{key: {"value": v, "desc": null}}``, with ``_wandb``."""
        config: dict[str, Any] = {}
        if "_wandb" in self.rawconfig:
            config["_wandb"] = {"value": self.rawconfig["_wandb"], "desc": None}
        for key, value in self.config.items():
            config[key] = {"value": value, "desc": None}
        return json.dumps(config)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """``wandb-metadata.json`` in the SDK; the connector reads no run files, so always None (the
        SDK's answer when the file cannot be read)."""
        return None

    # -- files and artifacts (read-only listings, `connector.remote.files_artifacts`) ---------------

    def _listing_api(self, what: str) -> Api:
        if self._api is None:
            raise ConfigurationError(
                f"run {self.ref.path} was read from a local file: its {what} are listed only by a W&B server"
            )
        return self._api

    def files(self, names: list[str] | None = None, pattern: str | None = None, per_page: int = 50) -> Files:
        """The run's files (the SDK's `Run.files`): a paginated, indexable, sized listing of `File`
        objects (``name``, ``size``, ``mimetype``, ``md5``, ``updated_at``, ``url``...); `names`
        selects files by name, `pattern` by a MySQL ``LIKE`` pattern (``"%.json"``). Nothing is
        downloaded."""
        api = self._listing_api("files")
        return Files(api.transport, self.ref, names, per_page, pattern, run=self)

    def file(self, name: str) -> File:
        """The run's file `name` (IndexError when it has none by that name), as the SDK's `Run.file`."""
        return self.files([name])[0]

    def logged_artifacts(self, per_page: int = 100) -> RunArtifacts:
        """The artifacts the run logged (its outputs): a paginated, sized listing of read-only
        `Artifact` objects (``name``, ``type``, ``version``, ``aliases``, ``digest``, ``size``...)."""
        api = self._listing_api("artifacts")
        return RunArtifacts(api.transport, self.ref, "logged", per_page,
                            app_url=app_url(api.settings.base_url), run=self)  # fmt: skip

    def used_artifacts(self, per_page: int = 100) -> RunArtifacts:
        """The artifacts the run declared as inputs (``run.use_artifact``), as `logged_artifacts`."""
        api = self._listing_api("artifacts")
        return RunArtifacts(api.transport, self.ref, "used", per_page,
                            app_url=app_url(api.settings.base_url), run=self)  # fmt: skip

    def load(self, force: bool = False) -> dict[str, Any]:
        """The run's attributes (fetched again from the server with `force`), as the SDK's `load`:
        ``config`` unwrapped, ``rawconfig``, ``summaryMetrics`` and ``systemMetrics`` as dicts."""
        if force and self._api is not None:
            fresh = self._api.run(self.ref)
            self._attrs, self._parsed = fresh._attrs, fresh._parsed
            self._source = None
        self._complete()
        return {
            **self._attrs,
            "config": self.config,
            "rawconfig": self.rawconfig,
            "summaryMetrics": self.summary,
            "systemMetrics": self.system_metrics,
        }

    def __getattr__(self, name: str) -> Any:
        """Other attributes of the server's answer, by snake_case or GraphQL name (the SDK's fallback,
        e.g. ``run.commit``, ``run.description``, ``run.projectId``)."""
        if name.startswith("_"):
            raise AttributeError(name)
        attrs = self.__dict__.get("_attrs") or {}
        keys = (_snake_to_camel(name), name)
        if "_lock" in self.__dict__ and any(k in LISTING_OMITS and k not in attrs for k in keys):
            self._complete()  # e.g. run.summaryMetrics on a run from a light listing
            attrs = self._attrs
        for key in keys:
            if key in attrs and key != "user":
                return attrs[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def history_keys(self) -> dict[str, Any]:
        """The run's ``historyKeys`` (keys, their types, ``lastStep``)."""
        if "historyKeys" not in self._attrs:
            self._complete()
        keys = self._attrs.get("historyKeys")
        if not isinstance(keys, dict):  # null from the server, or no server: ask the source
            keys = self.source.history_keys()
            self._attrs["historyKeys"] = keys
        return keys

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802 - the SDK's name
        """The last logged step, or -1 for an empty run (fetched fresh, as the SDK does)."""
        last = self.source.history_keys().get("lastStep")
        return last if isinstance(last, int) else -1

    @property
    def last_step(self) -> int:
        return self.lastHistoryStep

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    @property
    def source(self) -> HistorySource:
        if self._source is None:
            assert self._api is not None
            self._source = ApiSource(
                self._api.transport,
                self.ref,
                line_count=self.history_line_count,
                running=self.state == "running",
            )
        return self._source

    @property
    def _concurrency(self) -> int:
        return self._api.concurrency if self._api is not None else DEFAULT_CONCURRENCY

    @property
    def _decode_pool(self) -> DecodePool | None:
        return self._api.decode_pool if self._api is not None else None

    # -- history --------------------------------------------------------------------------------

    def scan_history(
        self,
        keys: Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        min_step: int = 0,
        max_step: int | None = None,
        use_cache: bool = True,
        *,
        concurrency: int | None = None,
    ) -> HistoryScan:
        """Every row of the run, paged by step (the SDK's `scan_history`).

        `min_step` is inclusive, `max_step` exclusive and clamped to the last step + 1. With `keys`,
        only rows holding **all** of them come back (the SDK's rule); use `scan(columns=...)` for one
        row per step with nulls. `use_cache` is accepted for compatibility.
        Iterate for dict rows, or call `to_arrow()`, `to_batches()`, `to_polars()`, `to_pandas()`.
        """
        del use_cache
        if keys is not None and (isinstance(keys, str) or not isinstance(keys, Sequence)):
            raise ConfigurationError(f"keys must be a list of strings, got {keys!r}")
        return HistoryScan(
            self.source,
            keys=tuple(keys) if keys else None,  # [] means every key, as in the SDK
            min_step=min_step,
            max_step=max_step,
            page_size=page_size,
            concurrency=concurrency or self._concurrency,
            decode_pool=self._decode_pool,
        )

    def scan(
        self,
        columns: Sequence[str] | None = None,
        *,
        min_step: int | None = None,
        max_step: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        concurrency: int | None = None,
    ) -> HistoryScan:
        """One row per step in ``[min_step, max_step)``, projected to `columns` (all when None).

        Unlike `scan_history(keys=...)`, columns never change which rows come back.
        """
        if columns is not None and (isinstance(columns, str) or not isinstance(columns, Sequence)):
            raise ConfigurationError(f"columns must be a list of strings, got {columns!r}")
        return HistoryScan(
            self.source,
            columns=tuple(columns) if columns is not None else None,
            min_step=min_step or 0,
            max_step=max_step,
            page_size=page_size,
            concurrency=concurrency or self._concurrency,
            decode_pool=self._decode_pool,
        )

    def history(
        self,
        samples: int = 500,
        keys: Sequence[str] | None = None,
        x_axis: str = "_step",
        pandas: bool = True,
        stream: str = "default",
        *,
        format: str | None = None,
    ) -> Any:
        """Server-side sampled history (the SDK's `history`).

        Returns a pandas DataFrame when `pandas` is true and pandas is installed, else a list of
        dicts. `format="arrow"` or `"polars"` returns a `pa.Table` / `pl.DataFrame` instead.
        `stream="system"` reads system metrics (`events`).
        """
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise ConfigurationError(f"keys must be a list of strings, got {keys!r}")
        if keys and stream != "default":
            raise ConfigurationError("keys can only be given with stream='default'")
        if stream not in ("default", "system"):
            raise ConfigurationError(f"stream must be 'default' or 'system', got {stream!r}")
        spec_keys = [x_axis, *keys] if keys else None
        rows = self.source.sampled_history(samples, spec_keys, stream)
        if format is not None:
            return _rows_as(rows, format)
        if pandas:
            try:
                import pandas as pd
            except ImportError:
                log.warning("history(): pandas is not installed, returning a list of dicts "
                            "(pass pandas=False, or format='arrow')")
                return rows
            return pd.DataFrame.from_records(rows)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The run's metadata as one flat record (the shape of the `runs` table)."""
        self._complete()
        keys = self._attrs.get("historyKeys")
        last = keys.get("lastStep") if isinstance(keys, dict) else None
        return {
            "entity": self.entity,
            "project": self.project,
            "run_id": self.id,
            "name": self.name,
            "state": self.state,
            "created_at": self.created_at,
            "heartbeat_at": self.heartbeat_at,
            "tags": self.tags,
            "config": self.config,
            "summary": self.summary,
            "last_step": last if isinstance(last, int) else None,
            "history_line_count": self.history_line_count,
        }


def _rows_as(rows: list[dict[str, Any]], format: str) -> Any:
    """Sampled rows as Arrow or Polars, with the column policy of `connector.core.arrow`."""
    import pyarrow as pa

    from .core.arrow import SchemaPlan
    from .core.values import history_keys_from_rows

    plan = SchemaPlan.from_history_keys(history_keys_from_rows(rows))
    table = pa.Table.from_batches([plan.to_batch(rows)], schema=plan.schema)
    if not any("_step" in row for row in rows):  # system metrics rows have no step
        table = table.drop_columns(["_step"])
    if format == "arrow":
        return table
    if format == "polars":
        import polars as pl

        return pl.from_arrow(table)
    raise ConfigurationError(f"format must be 'arrow' or 'polars', got {format!r}")


class Runs:
    """The runs of one project, fetched page by page (`len()` is the server's run count).

    Iterating lists the runs afresh each time. Indexing (``runs[0]``, ``runs[-1]``, ``runs[1:3]``)
    reads pages only as far as needed and keeps the runs it read for later indexing, like the SDK;
    a negative index or an open slice reads the whole listing.
    """

    def __init__(
        self,
        api: Api,
        entity: str,
        project: str,
        filters: dict[str, Any],
        order: str,
        per_page: int,
        *,
        lazy: bool = True,
    ) -> None:
        self._api = api
        self.entity = entity
        self.project = project
        self.filters = filters
        self.order = order
        self.per_page = per_page
        self.lazy = lazy
        self._count: int | None = None
        self._loaded: list[Run] = []
        self._loader: Iterator[Run] | None = None
        self._exhausted = False

    def __repr__(self) -> str:
        return f"<Runs {self.entity}/{self.project}>"

    def _page(self, cursor: str | None) -> tuple[list[Run], str | None, bool]:
        """One page of the listing: its runs, the next cursor and whether there are more (checked:
        `ProtocolError` naming the project for any answer that breaks the protocol)."""
        where = f"project {self.entity}/{self.project}"
        data = self._api.transport.execute(
            document("runs", full=not self.lazy),
            {
                "entity": self.entity,
                "project": self.project,
                "cursor": cursor,
                "perPage": self.per_page,
                "order": self.order,
                "filters": json.dumps(self.filters),
            },
        )
        project = data.get("project")
        if project is None:
            raise NotFoundError(f"project {self.entity}/{self.project} not found")
        if not isinstance(project, dict):
            raise ProtocolError(f"{where}: the answer's project is not a JSON object")
        count = project.get("runCount")
        if count.__class__ is not int or count < 0:
            raise ProtocolError(f"{where}: runCount is {count!r:.60}, not a count")
        self._count = count
        connection = project.get("runs")
        edges = connection.get("edges") if isinstance(connection, dict) else None
        info = connection.get("pageInfo") if isinstance(connection, dict) else None
        if not isinstance(edges, list) or not isinstance(info, dict):
            raise ProtocolError(f"{where}: the runs listing is not {{edges: [...], pageInfo: {{...}}}}")
        runs = []
        for edge in edges:
            node = edge.get("node") if isinstance(edge, dict) else None
            if node is None and isinstance(edge, dict):
                continue  # a run that went away between the count and the page
            name = node.get("name") if isinstance(node, dict) else None
            if not isinstance(name, str) or not name:
                raise ProtocolError(f"{where}: the runs listing holds {edge!r:.100}, not a run")
            ref = RunRef(self.entity, self.project, name)
            check = _check_listed_run if self.lazy else check_run_attrs
            runs.append(Run(self._api, ref, check(node, ref.path)))
        more, end = info.get("hasNextPage"), info.get("endCursor")
        if more.__class__ is not bool or not isinstance(end, str | None):
            raise ProtocolError(
                f"{where}: the runs listing's pageInfo is {info!r:.100}, not {{endCursor, hasNextPage}}"
            )
        return runs, end, more

    def __iter__(self) -> Iterator[Run]:
        """Every run, page by page. A listing that cannot end (a cursor that does not advance or
        comes back, pages of runs already listed, endless empty pages) raises `ProtocolError`."""
        where = f"project {self.entity}/{self.project}"
        cursor: str | None = None
        cursors: set[str] = set()
        seen: set[str] = set()
        empty = 0
        while True:
            runs, end, more = self._page(cursor)
            if more and (not end or end == cursor or end in cursors):
                raise ProtocolError(
                    f"{where}: the runs listing says hasNextPage but its cursor does not advance "
                    f"({cursor!r} -> {end!r}); it would never end"
                )
            fresh = [run for run in runs if run.id not in seen]
            if runs and not fresh:
                raise ProtocolError(
                    f"{where}: the runs listing answered a page of runs it had already listed "
                    f"(cursor {cursor!r}); it would never end"
                )
            seen.update(run.id for run in fresh)
            yield from fresh
            if not more:
                return
            empty = 0 if runs else empty + 1
            if empty >= MAX_EMPTY_PAGES:
                raise ProtocolError(
                    f"{where}: the runs listing answered {empty} pages without a run but hasNextPage"
                )
            limit = 2 * (self._count or 0) + 10_000
            if len(seen) > limit:
                raise ProtocolError(
                    f"{where}: the runs listing went past {limit} runs although runCount is {self._count}"
                )
            assert end  # hasNextPage without a new cursor raised above
            cursors.add(end)
            cursor = end

    def __len__(self) -> int:
        if self._count is None:
            self._page(None)
        return int(self._count or 0)

    def _load_until(self, size: int | None) -> None:
        """Read runs into the index cache until it holds `size` of them (None: all)."""
        if self._loader is None:
            self._loader = iter(self)
        while not self._exhausted and (size is None or len(self._loaded) < size):
            try:
                self._loaded.append(next(self._loader))
            except StopIteration:
                self._exhausted = True

    def __getitem__(self, index: int | slice) -> Any:
        """``runs[i]`` is a `Run`, ``runs[i:j]`` a list of runs; IndexError past the end."""
        if isinstance(index, slice):
            bounds = (index.start, index.stop)
            negative = any(b is not None and b < 0 for b in bounds) or (index.step or 1) < 0
            if negative or index.stop is None:
                self._load_until(None)
            else:
                self._load_until(index.stop)
            return self._loaded[index]
        if not hasattr(index, "__index__") or isinstance(index, bool):
            raise TypeError(f"Runs indices must be integers or slices, not {type(index).__name__}")
        position = index.__index__()
        self._load_until(None if position < 0 else position + 1)
        try:
            return self._loaded[position]
        except IndexError:
            raise IndexError(
                f"run index {position} out of range: project {self.entity}/{self.project} "
                f"lists {len(self._loaded)} runs"
            ) from None
