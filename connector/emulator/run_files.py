"""Deterministic files and artifacts of served runs: what ``Run.files``, ``outputArtifacts`` and
``inputArtifacts`` answer.

Every value is a pure function of the run's metadata and steps, so the official SDK and the connector
read the same listings from any emulator serving the same runs.

Files (sorted by name, as listed): ``config.yaml`` (the run's config in the SDK's YAML layout),
``output.log`` (a few console lines), ``requirements.txt`` (fixed pins) and ``wandb-summary.json``
(the summary). Their contents are real bytes: ``sizeBytes`` is their length, ``md5`` the base64 MD5
digest (as W&B stores it), and ``GET /files/<entity>/<project>/<run_id>/<name>`` serves them
(``url``; ``directUrl`` is the same file under ``/storage/``). No ``wandb-metadata.json``: the SDK's
``Run.metadata`` stays None, as the connector's.

Artifacts, with ``h`` a hash of the run path:

* logged (``outputArtifacts``): ``model-<run_id>`` (type ``model``), versions ``v0 .. v(n-1)`` with
  ``n = 1 + h % 3``; aliases ``v<i>``, ``latest`` on the last one and ``best`` on one of them; a
  ``historyStep`` inside the run's steps; then ``run-<run_id>-history`` (type ``wandb-history``) ``v0``.
* used (``inputArtifacts``): the project's ``training-data`` (type ``dataset``, two versions, ``v1``
  is ``latest``; ``v0`` has a 30-day TTL) at version ``h % 2``, and ``tokenizer:v0`` (type ``model``)
  when ``(h >> 12) % 2``; nothing at all when ``(h >> 8) % 4 == 0``.

>>> from connector.core.rundata import RunMeta
>>> meta = RunMeta("e", "p", "abc", config={"lr": 0.1})
>>> [f.name for f in run_files(meta, 10)]
['config.yaml', 'output.log', 'requirements.txt', 'wandb-summary.json']
>>> run_files(meta, 10)[0].content.decode().splitlines()[:4]
['wandb_version: 1', '', 'lr:', '  desc: null']
>>> [a.name for a in logged_artifacts(meta, list(range(10)))][-1]
'run-abc-history:v0'
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.rundata import RunMeta

REQUIREMENTS = b"numpy==1.26.4\npyarrow==17.0.0\ntorch==2.3.1\nwandb==0.31.0\n"
MIMETYPES = {
    ".yaml": "application/x-yaml",
    ".log": "text/plain",
    ".txt": "text/plain",
    ".json": "application/json",
}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _time(base: str, minutes: int) -> str:
    """`base` (ISO, naive UTC) plus `minutes`, in the service's naive ISO format."""
    try:
        parsed = _dt.datetime.fromisoformat(base.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        parsed = _dt.datetime(2024, 1, 1)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_dt.UTC).replace(tzinfo=None)
    return (parsed + _dt.timedelta(minutes=minutes)).strftime(TIME_FORMAT)


@dataclass(frozen=True)
class RunFile:
    """One file of a run, with its bytes."""

    name: str
    content: bytes
    updated_at: str

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.content, usedforsecurity=False).digest()).decode()

    @property
    def mimetype(self) -> str:
        return MIMETYPES.get("." + self.name.rsplit(".", 1)[-1], "application/octet-stream")


def _config_yaml(config: dict[str, Any]) -> bytes:
    lines = ["wandb_version: 1", ""]
    for key in sorted(config):
        value = json.dumps(config[key], sort_keys=True, default=str)
        lines += [f"{json.dumps(key) if ':' in key else key}:", "  desc: null", f"  value: {value}"]
    return ("\n".join(lines) + "\n").encode()


def run_files(meta: RunMeta, n_steps: int) -> list[RunFile]:
    """The files of a run with `n_steps` logged steps, sorted by name."""
    when = meta.heartbeat_at or meta.created_at
    updated = _time(when, 0)
    log = [f"wandb: Tracking run {meta.display_name or meta.run_id}"]
    log += [f"epoch {i}: {n_steps * (i + 1) // 3} steps" for i in range(3)]
    log.append(f"wandb: Run {meta.run_id} {meta.state} after {n_steps} steps")
    summary = json.dumps(meta.summary, sort_keys=True, default=str).encode()
    files = [
        RunFile("config.yaml", _config_yaml(meta.config), _time(meta.created_at, 0)),
        RunFile("output.log", ("\n".join(log) + "\n").encode(), updated),
        RunFile("requirements.txt", REQUIREMENTS, _time(meta.created_at, 0)),
        RunFile("wandb-summary.json", summary, updated),
    ]
    return sorted(files, key=lambda f: f.name)


def like(pattern: str, name: str) -> bool:
    """MySQL ``LIKE`` (``%`` any run, ``_`` one character; case-insensitive), as ``files(pattern)``.

    >>> like("%.json", "wandb-summary.JSON"), like("output.lo_", "output.log"), like("o%", "config")
    (True, True, False)
    """
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, flags=re.IGNORECASE | re.DOTALL) is not None


@dataclass(frozen=True)
class SyntheticArtifact:
    """One artifact version, as the ``Artifact`` GraphQL type describes it."""

    entity: str
    project: str
    collection: str
    type: str
    version: int
    aliases: tuple[str, ...]
    created_at: str
    updated_at: str
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    history_step: int | None = None
    ttl_seconds: int = -2
    ttl_inherited: bool = True

    @property
    def name(self) -> str:
        return f"{self.collection}:v{self.version}"

    @property
    def qualified(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def id(self) -> str:
        return _b64(f"Artifact:{_hash(self.qualified) % 10**9}")

    @property
    def digest(self) -> str:
        return hashlib.md5(self.qualified.encode(), usedforsecurity=False).hexdigest()

    @property
    def size(self) -> int:
        return 1000 + _hash("size:" + self.qualified) % 50_000_000

    @property
    def file_count(self) -> int:
        return 1 + _hash("files:" + self.qualified) % 20


def logged_artifacts(meta: RunMeta, steps: Sequence[int]) -> list[SyntheticArtifact]:
    """The artifacts a run logged (its model checkpoints, then its history artifact)."""
    h = _hash(f"{meta.entity}/{meta.project}/{meta.run_id}")
    n = 1 + h % 3
    best = (h >> 4) % n
    out = []
    for v in range(n):
        aliases = [f"v{v}"] + (["latest"] if v == n - 1 else []) + (["best"] if v == best else [])
        step = steps[(v + 1) * len(steps) // (n + 1)] if len(steps) else None
        out.append(
            SyntheticArtifact(
                meta.entity, meta.project, f"model-{meta.run_id}", "model", v, tuple(aliases),
                created_at=_time(meta.created_at, 10 * (v + 1)),
                updated_at=_time(meta.created_at, 10 * (v + 1) + (1 if v == n - 1 else 0)),
                description=f"checkpoint {v} of {meta.display_name or meta.run_id}",
                metadata={"epoch": v, "val_loss": round(1.0 / (v + 2), 6), "framework": "torch"},
                tags=("checkpoint",) if v == n - 1 else (),
                history_step=None if step is None else step + 1,
            )
        )  # fmt: skip
    out.append(
        SyntheticArtifact(
            meta.entity, meta.project, f"run-{meta.run_id}-history", "wandb-history", 0, ("v0", "latest"),
            created_at=_time(meta.heartbeat_at or meta.created_at, 1),
            updated_at=_time(meta.heartbeat_at or meta.created_at, 1),
        )
    )  # fmt: skip
    return out


def _dataset(entity: str, project: str, version: int) -> SyntheticArtifact:
    return SyntheticArtifact(
        entity, project, "training-data", "dataset", version,
        (f"v{version}", "latest") if version == 1 else (f"v{version}",),
        created_at=f"2023-12-{1 + 14 * version:02d}T09:30:00",
        updated_at=f"2023-12-{1 + 14 * version:02d}T09:30:00",
        description="the training split" if version else None,
        metadata={"rows": 50_000 * (version + 1), "source": "s3://bucket/train"},
        tags=("raw",) if version == 0 else (),
        ttl_seconds=30 * 86400 if version == 0 else -2,
        ttl_inherited=version != 0,
    )  # fmt: skip


def used_artifacts(meta: RunMeta) -> list[SyntheticArtifact]:
    """The artifacts a run used (declared as inputs)."""
    h = _hash(f"{meta.entity}/{meta.project}/{meta.run_id}")
    if (h >> 8) % 4 == 0:
        return []
    out = [_dataset(meta.entity, meta.project, h % 2)]
    if (h >> 12) % 2:
        out.append(
            SyntheticArtifact(
                meta.entity, meta.project, "tokenizer", "model", 0, ("v0", "latest"),
                created_at="2023-11-20T12:00:00", updated_at="2023-11-20T12:00:00",
                metadata={"vocab_size": 32000},
            )
        )  # fmt: skip
    return out


def artifact_node(art: SyntheticArtifact, project: Any) -> dict[str, Any]:
    """The GraphQL ``Artifact`` object of `art`; `project` is the ``Project`` it belongs to."""
    sequence = {"__typename": "ArtifactSequence", "id": _b64(f"ArtifactSequence:{art.collection}"),
                "name": art.collection, "project": project}  # fmt: skip
    return {
        "id": art.id,
        "artifactSequence": sequence,
        "versionIndex": art.version,
        "artifactType": {"name": art.type},
        "description": art.description,
        "metadata": json.dumps(art.metadata),
        "ttlDurationSeconds": art.ttl_seconds,
        "ttlIsInherited": art.ttl_inherited,
        "tags": [{"id": _b64(f"Tag:{t}"), "name": t} for t in art.tags],
        "historyStep": art.history_step,
        "state": "COMMITTED",
        "size": art.size,
        "digest": art.digest,
        "digestAlgorithm": "MANIFEST_MD5",
        "commitHash": art.digest[:12],
        "fileCount": art.file_count,
        "createdAt": art.created_at,
        "updatedAt": art.updated_at,
        "aliases": [
            {"id": _b64(f"ArtifactAlias:{art.qualified}:{a}"), "alias": a, "artifactCollection": sequence}
            for a in art.aliases
        ],
    }


def page(items: Sequence[Any], key: Any, after: str | None, first: int | None) -> tuple[list[Any], int]:
    """The items after the cursor `after` (``None``: from the start), at most `first` (default 50),
    and the index of the first one. A cursor is ``base64("cursor:" + key(item))``; an unknown cursor
    gives an empty page."""
    start = 0
    if after:
        try:
            wanted = base64.b64decode(after).decode().removeprefix("cursor:")
        except ValueError:
            wanted = None
        keys = [key(item) for item in items]
        start = keys.index(wanted) + 1 if wanted in keys else len(items)
    first = 50 if first is None else max(first, 0)
    return list(items[start : start + first]), start


def cursor(text: str) -> str:
    """The cursor of the item whose key is `text`."""
    return _b64(f"cursor:{text}")
