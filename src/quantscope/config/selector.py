"""Node selectors: which nodes to leave in float, by name, regular expression or op type."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quantscope.config.fields import setting
from quantscope.errors import ConfigError, SelectorError


@dataclass(frozen=True, kw_only=True)
class NodeSelector:
    """Nodes to leave in float, by exact name, regular expression on the name, or op type.

    Every rule must match at least one node of the model it is applied to
    (:meth:`resolve` raises :class:`SelectorError` otherwise), so a typo cannot silently
    leave the model untouched.
    """

    names: tuple[str, ...] = setting(
        (), cli="--exclude-name", multiple=True, help="Leave this node in float (repeatable)."
    )
    patterns: tuple[str, ...] = setting(
        (), cli="--exclude-regex", multiple=True, help="Leave nodes whose name matches in float (repeatable)."
    )
    op_types: tuple[str, ...] = setting(
        (), cli="--exclude-op", multiple=True, help="Leave every node of this op type in float (repeatable)."
    )

    def __post_init__(self) -> None:
        for attr in ("names", "patterns", "op_types"):
            value = getattr(self, attr)
            if isinstance(value, str):
                raise ConfigError(f"NodeSelector.{attr} must be a sequence of strings, not one string {value!r}")
            object.__setattr__(self, attr, tuple(value))
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression {p!r} in node selector: {exc}") from exc

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns or self.op_types)

    def resolve(self, nodes: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Map node name → the rule that selected it, for ``(name, op_type)`` pairs.

        Raises :class:`SelectorError` for any rule that matches nothing.
        """
        nodes = list(nodes)
        selected: dict[str, str] = {}
        unmatched: list[str] = []
        names = {n for n, _ in nodes}
        for name in self.names:
            if name in names:
                selected.setdefault(name, f"name {name!r}")
            else:
                unmatched.append(f"name {name!r}")
        for pattern in self.patterns:
            rx = re.compile(pattern)
            hits = [n for n, _ in nodes if rx.search(n)]
            if not hits:
                unmatched.append(f"pattern {pattern!r}")
            for n in hits:
                selected.setdefault(n, f"pattern {pattern!r}")
        for op in self.op_types:
            hits = [n for n, t in nodes if t == op]
            if not hits:
                unmatched.append(f"op type {op!r}")
            for n in hits:
                selected.setdefault(n, f"op type {op!r}")
        if unmatched:
            present = sorted({t for _, t in nodes})
            raise SelectorError(
                "exclusion rule(s) matched no node: "
                + ", ".join(unmatched)
                + f". The model's op types are: {', '.join(present)}; "
                "check spelling or use `quantscope inspect` to list node names."
            )
        return selected

    def to_dict(self) -> dict[str, list[str]]:
        return {"names": list(self.names), "patterns": list(self.patterns), "op_types": list(self.op_types)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeSelector:
        unknown = set(d) - {"names", "patterns", "op_types"}
        if unknown:
            raise ConfigError(f"unknown node selector key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) for k, v in d.items()})
