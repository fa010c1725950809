"""What a job ran on: the worker's CPU model, its instruction-set features, threads and host.

Every :class:`~quantscope.execution.fanout.JobResult` carries the :class:`MachineFacts` of the
worker that ran it, read there (``/proc/cpuinfo`` on Linux). Latencies are only comparable
when they were measured on the same *kind* of worker (same CPU model, features and usable
threads); :func:`comparable` groups results by kind and writes the sentence a report shows.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Comparability", "MachineFacts", "comparable", "machine_facts", "where_timed"]

NOTABLE_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16",
)
"""CPU features that change how fast quantized kernels run (x86 and Arm names)."""

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "ORT_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class MachineFacts:
    """One worker's CPU and threads, as seen from inside the job."""

    hostname: str
    cpu_model: str
    architecture: str
    flags: tuple[str, ...]
    logical_cpus: int
    usable_cpus: int
    thread_limits: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> tuple[Any, ...]:
        """What makes two workers time alike: everything but the host name."""
        return (self.cpu_model, self.architecture, self.flags, self.usable_cpus,
                tuple(sorted(self.thread_limits.items())))

    def label(self) -> str:
        """``"Intel(R) Xeon(R) ... (avx2, avx512_vnni), 4 of 8 CPUs"`` for results and reports."""
        features = ", ".join(self.flags) or "no notable SIMD features"
        limits = "".join(f", {k}={v}" for k, v in sorted(self.thread_limits.items()))
        return f"{self.cpu_model} [{self.architecture}] ({features}), {self.usable_cpus} of {self.logical_cpus} CPUs{limits}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname, "cpu_model": self.cpu_model,
            "architecture": self.architecture, "flags": list(self.flags),
            "logical_cpus": self.logical_cpus, "usable_cpus": self.usable_cpus,
            "thread_limits": dict(self.thread_limits),
        }


    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MachineFacts:
        """The inverse of :meth:`to_dict` (as stored in ``VariantResult.measured_on``)."""
        return cls(
            hostname=str(d.get("hostname", "")), cpu_model=str(d.get("cpu_model", "unknown CPU")),
            architecture=str(d.get("architecture", "")), flags=tuple(d.get("flags") or ()),
            logical_cpus=int(d.get("logical_cpus") or 1), usable_cpus=int(d.get("usable_cpus") or 1),
            thread_limits=dict(d.get("thread_limits") or {}),
        )


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """CPU model name and feature flags from ``/proc/cpuinfo`` (empty when unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware"):
            model = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    return model, flags


def machine_facts() -> MachineFacts:
    """The facts of the machine this runs on (call it inside the job, on the worker)."""
    model, flags = _cpuinfo()
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    return MachineFacts(
        hostname=socket.gethostname(),
        cpu_model=model or platform.processor() or "unknown CPU",
        architecture=platform.machine(),
        flags=tuple(f for f in NOTABLE_FLAGS if f in flags),
        logical_cpus=logical,
        usable_cpus=usable,
        thread_limits={k: os.environ[k] for k in _THREAD_VARIABLES if os.environ.get(k)},
    )


class _HasMachine(Protocol):
    key: str

    @property
    def machine(self) -> MachineFacts | None: ...


@dataclass(frozen=True)
class Comparability:
    """Which results' timings may be compared: the groups of one worker kind each."""

    groups: tuple[tuple[MachineFacts, tuple[str, ...]], ...]
    unknown: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """True when every timed result came from one worker kind."""
        return len(self.groups) <= 1 and not self.unknown

    def same_kind(self, a: str, b: str) -> bool:
        """Whether the latencies of results ``a`` and ``b`` may be compared."""
        return any(a in keys and b in keys for _, keys in self.groups)

    def text(self) -> str:
        """The sentence a report shows under its latency numbers."""
        if not self.groups:
            return "No latency was measured."
        if len(self.groups) == 1 and not self.unknown:
            return f"All latencies were measured on one worker kind, {self.groups[0][0].label()}; they compare."
        lines = [f"Latencies were measured on {len(self.groups)} worker kinds; compare them only within a group:"]
        lines += [f"- {facts.label()}: {', '.join(keys)}" for facts, keys in self.groups]
        if self.unknown:
            lines.append(f"- worker not known (not compared): {', '.join(self.unknown)}")
        return "\n".join(lines)


def comparable(results: Iterable[_HasMachine]) -> Comparability:
    """Group results (anything with ``key`` and ``machine``) by the kind of worker that ran them."""
    groups: dict[tuple[Any, ...], tuple[MachineFacts, list[str]]] = {}
    unknown: list[str] = []
    for result in results:
        facts = result.machine
        if facts is None:
            unknown.append(result.key)
            continue
        groups.setdefault(facts.kind, (facts, []))[1].append(result.key)
    return Comparability(
        groups=tuple((facts, tuple(keys)) for facts, keys in groups.values()), unknown=tuple(unknown)
    )


@dataclass(frozen=True)
class _Timed:
    key: str
    machine: MachineFacts | None


class _TimedVariant(Protocol):
    name: str
    latency: Any
    measured_on: Mapping[str, Any] | None


def where_timed(variants: Iterable[_TimedVariant]) -> str | None:
    """The sentence a report shows about where the latencies of ``variants`` were measured.

    ``variants``: anything with ``name``, ``latency`` and ``measured_on`` (a result's
    variants). None when nothing was timed.
    """
    timed = [v for v in variants if v.latency]
    if not timed:
        return None
    if all(v.measured_on is None for v in timed):
        return "All latencies were measured in the analyzing process, on the machine described here; they compare."
    return comparable(
        _Timed(v.name, None if v.measured_on is None else MachineFacts.from_dict(v.measured_on)) for v in timed
    ).text()
