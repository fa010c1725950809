"""Where the energy estimates come from: the table :mod:`quantscope.analysis.energy` used, as text.

The numbers, citation and assumptions are those of the analysis module (one source of truth);
this module only turns them into rows a report can show.
"""

from __future__ import annotations

from dataclasses import dataclass

ESTIMATE = ("An estimate, not a measurement: operation counts by precision times the published "
            "energy of each operation, plus bytes moved times the energy of a memory access. "
            "Compare variants with one another, not with a power meter.")


@dataclass(frozen=True)
class EnergySource:
    name: str
    citation: str
    rows: tuple[tuple[str, str], ...]  # (operation, energy per operation)
    assumptions: tuple[str, ...]


def source(name: str) -> EnergySource | None:
    """The table called ``name`` (``EnergyResult.table``), or None when analysis has no such table."""
    from quantscope.analysis import energy

    tables = {t.name: t for t in (energy.HOROWITZ_2014,)}
    table = tables.get(name)
    if table is None:
        return None
    d = energy.describe_table(table)
    rows = tuple((op, _fmt_pj(pj, op)) for op, pj in dict(d["pj"]).items())  # type: ignore[call-overload]
    return EnergySource(name=table.name, citation=str(d["source"]), rows=rows,
                        assumptions=(ESTIMATE, *map(str, d["assumptions"])))  # type: ignore[call-overload]


def _fmt_pj(pj: float, op: str) -> str:
    per = " per 64-bit access" if op.startswith(("SRAM", "DRAM")) else ""
    return (f"{pj / 1000:g} nJ" if pj >= 1000 else f"{pj:g} pJ") + per
