"""Deterministic fault injection for the emulator's ``POST /graphql``.

A `FaultSpec` decides, for each eligible GraphQL request in arrival order, whether it fails and how.
The decisions come from ``random.Random(seed)``: one draw per eligible request, so the same request
sequence gives the same faults. Kinds:

* ``"429"``: HTTP 429 with ``Retry-After: <retry_after>`` (seconds) and a JSON ``errors`` body;
* ``"500"``, ``"502"``, ``"503"``, ``"504"``: that HTTP status with a JSON ``errors`` body;
* ``"reset"``: the connection is closed with a TCP reset, no answer at all;
* ``"slow"``: the normal answer, after sleeping ``slow_seconds``;
* ``"truncate"``: the normal headers (full ``Content-Length``), half the body, then the socket closes.

`only_fields` restricts faults to requests that touch one of the named counted fields
(``"history"``, ``"sampledHistory"``, ``"run"``, ``"viewer"``... see `connector.emulator.server`).

>>> spec = FaultSpec(rate=0.5, kinds=("500", "reset"), seed=3)
>>> [FaultPlan(spec).draw() for _ in range(3)] == [FaultPlan(spec).draw() for _ in range(3)]
True
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("429", "500", "502", "503", "504", "reset", "slow", "truncate")


@dataclass(frozen=True)
class FaultSpec:
    """How often (`rate` in [0, 1]) and how (`kinds`) GraphQL requests fail, reproducibly by `seed`."""

    rate: float = 0.2
    kinds: tuple[str, ...] = ("429", "500", "502", "503", "reset", "slow", "truncate")
    seed: int = 1
    retry_after: float = 0.01
    slow_seconds: float = 0.05
    only_fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate!r}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"unknown fault kinds {bad!r}; choose from {KINDS}")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> FaultSpec | None:
        """Build from a JSON object (``None`` or ``{}`` or ``rate`` 0 means no faults).

        >>> FaultSpec.from_json({"rate": 1, "kinds": ["429"]}).kinds
        ('429',)
        """
        if not obj:
            return None
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
        args: dict[str, Any] = dict(obj)
        if "kinds" in args:
            args["kinds"] = tuple(str(k) for k in args["kinds"])
        if args.get("only_fields") is not None:
            args["only_fields"] = tuple(args["only_fields"])
        spec = cls(**args)
        return spec if spec.rate > 0 else None


@dataclass
class FaultPlan:
    """The running state of a `FaultSpec`: a seeded generator drawn once per eligible request."""

    spec: FaultSpec
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.spec.seed)

    def applies_to(self, fields: Iterable[str]) -> bool:
        only = self.spec.only_fields
        return only is None or any(f in only for f in fields)

    def draw(self) -> str | None:
        """The fault for the next eligible request, or ``None``."""
        with self._lock:
            hit = self._rng.random() < self.spec.rate
            kind = self._rng.choice(self.spec.kinds)
        return kind if hit else None
