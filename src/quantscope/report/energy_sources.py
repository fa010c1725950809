"""Where the energy estimates come from: the published per-operation tables, cited in the report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnergySource:
    name: str
    citation: str
    rows: tuple[tuple[str, str], ...]  # (operation, energy) as published
    assumptions: tuple[str, ...]


HOROWITZ_2014 = EnergySource(
    name="horowitz-2014-45nm",
    citation=(
        "M. Horowitz, “Computing's energy problem (and what we can do about it)”, IEEE International "
        "Solid-State Circuits Conference (ISSCC 2014), pp. 10–14, doi:10.1109/ISSCC.2014.6757323; "
        "figures for a 45 nm process at 0.9 V."
    ),
    rows=(
        ("8-bit integer add", "0.03 pJ"),
        ("32-bit integer add", "0.1 pJ"),
        ("16-bit float add", "0.4 pJ"),
        ("32-bit float add", "0.9 pJ"),
        ("8-bit integer multiply", "0.2 pJ"),
        ("32-bit integer multiply", "3.1 pJ"),
        ("16-bit float multiply", "1.1 pJ"),
        ("32-bit float multiply", "3.7 pJ"),
        ("8 KB SRAM read (64 bit)", "10 pJ"),
        ("32 KB SRAM read (64 bit)", "20 pJ"),
        ("1 MB SRAM read (64 bit)", "100 pJ"),
        ("DRAM read (64 bit)", "1.3–2.6 nJ"),
    ),
    assumptions=(
        "An estimate, not a measurement: operation counts by precision times the published energy "
        "of each operation, plus the bytes moved times the energy of a memory access.",
        "The table is for a 45 nm process; today's CPUs use less energy per operation, so compare "
        "variants with one another, not with a power meter.",
        "Caches, instruction overheads, data layout conversions and the runtime's kernel choice are "
        "not modelled: a variant that ONNX Runtime executes in float (see each plan's runtime "
        "kernels) does not save the arithmetic energy its storage format suggests.",
        "Energy is per inference of one sample.",
    ),
)

SOURCES = {HOROWITZ_2014.name: HOROWITZ_2014}


def source(name: str) -> EnergySource | None:
    return SOURCES.get(name)
