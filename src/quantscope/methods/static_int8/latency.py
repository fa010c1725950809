"""Latency-aware static-int8: measure where integer execution wins on this machine, keep float where it loses.

After planning, the written int8 model is timed against the float model (paired, interleaved
rounds: :func:`quantscope.analysis.evaluate.time_paired`, the config's ``target_batch`` and
``target_threads``). With several regions (:mod:`.regions`), each region is timed kept float
against the full int8 model; a region whose float version is measurably faster stays float as a
whole, so no new float/integer round trip appears. When the choice is still not clearly faster
than float, parts of the remaining regions (:mod:`.parts`: node kinds such as depthwise
convolutions, and stretches in graph order) are timed kept float one at a time and kept float
where that is measurably faster. If int8 still loses, the plan keeps every node float: a model
written for speed is never slower than float on the machine that measured it. The plan records
every measurement (``plan.extra["regions"]``, ``["parts"]``, ``["latency"]``) and the reason of
every node kept float. Inputs are timed at the calibration data's sizes.

Timings are of the machine quantscope runs on: the same model may be planned differently on
another CPU. The timer is injectable, so the mechanism is testable without timing anything.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quantscope.analysis.evaluate import PairedLatency, time_calls, time_paired
from quantscope.analysis.stats import speed_verdict
from quantscope.calibrate import TensorStats
from quantscope.config import StaticInt8
from quantscope.errors import QuantscopeError
from quantscope.io import Model
from quantscope.methods.static_int8.memo import PlanMemo
from quantscope.methods.static_int8.parts import Part, parts
from quantscope.methods.static_int8.regions import INTEGER, Region, find_regions
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session, run

if TYPE_CHECKING:
    import onnxruntime as ort

    from quantscope.methods.static_int8.method import StaticInt8Method

logger = logging.getLogger(__name__)

Timer = Callable[[Model, Model], PairedLatency]
"""Times ``(reference, variant)`` in paired rounds; ``speed`` > 1 when the variant is faster."""

DYNAMIC_SIZE = 64  # a symbolic dimension other than the batch is timed at this size
MIN_FLOAT_MS = 0.025  # a float model whose fastest call is shorter is not timed against int8 (call overhead dominates)
MAX_REGIONS = 16  # the largest regions are timed; smaller ones keep the planner's decision
BUDGET_S = 10.0  # region timing stops after this long; the rest keep the planner's decision
REFINE_BELOW = 1.25  # a choice slower than this against float has its regions' parts timed too
SCREEN_BUDGET_S = 12.0  # timing each part alone stops after this long
REFINE_BUDGET_S = 20.0  # timing the winning parts together stops after this long
ROUNDS = 30
MAX_ROUNDS = 5000
TIMING_S = 0.4  # a timing of a fast model lasts about this long (more rounds, up to MAX_ROUNDS)
TOO_FAST = (f"the float model runs in under {MIN_FLOAT_MS} ms per call: too short to tell int8 from "
            "float, every region keeps the planner's decision")


def synthetic_feeds(
    model: Model, *, batch: int = 1, seed: int = 0, shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """One input per model input: the batch dimension ``batch``, other symbolic ones as in ``shapes``
    (e.g. the calibration data's: the sizes the model is used at) or else :data:`DYNAMIC_SIZE`;
    floats small normal values, integers 0 (a valid index), booleans False."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in model.inputs:
        seen = list((shapes or {}).get(spec.name, ()))
        dims = list(spec.shape or ())
        if len(seen) != len(dims):
            seen = []
        shape = [d if isinstance(d, int) and d >= 0 else batch if i == 0 else int(seen[i]) if seen else DYNAMIC_SIZE
                 for i, d in enumerate(dims)]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = (rng.standard_normal(shape) * 0.5).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds


def _fastest_call_ms(model: Model, feeds: Mapping[str, np.ndarray], threads: int) -> float:
    """The fastest of a few calls of ``model``: what the machine does unloaded (a median moves with load)."""
    session = make_session(model, threads=threads)
    fastest = time_calls(lambda: run(session, feeds), batch=1, threads=threads, warmup=5, runs=20).fastest_ms
    assert fastest is not None
    return fastest


def _batch_of(model: Model, feeds: Mapping[str, np.ndarray]) -> int:
    """The batch the feeds carry: the first dimension of the first input that has one."""
    for spec in model.inputs:
        shape = np.shape(feeds[spec.name])
        if shape:
            return int(shape[0])
    return 1


def paired_timer(feeds: Mapping[str, np.ndarray], *, threads: int, batch: int = 1, rounds: int = ROUNDS,
                 seed: int = 0) -> Timer:
    """A :data:`Timer` over ``feeds``, sessions made with deployment options (``threads``).

    The session of a reference model (the float model, the full int8 model) is made once and
    reused for every variant timed against it.
    """
    references: dict[int, tuple[Model, ort.InferenceSession]] = {}

    def timer(reference: Model, variant: Model) -> PairedLatency:
        held = references.get(id(reference))
        if held is None or held[0] is not reference:
            held = references[id(reference)] = (reference, make_session(reference, threads=threads))
        ref_session, session = held[1], make_session(variant, threads=threads)
        per_call = time_calls(lambda: run(ref_session, feeds), batch=batch, threads=threads, warmup=0, runs=3).median_ms / 1e3
        # a fast model gets more rounds: a timing shorter than a scheduler slice is luck, not a measurement
        count = int(min(MAX_ROUNDS, max(rounds, TIMING_S / max(2 * per_call, 1e-6))))
        return time_paired(lambda: run(ref_session, feeds), lambda: run(session, feeds), batch=batch, threads=threads,
                           rounds=count, seed=seed)
    return timer


def _measurement(m: PairedLatency) -> dict[str, Any]:
    # the verdicts here take no reference_ms (IMMATERIAL_MS): the search counts every microsecond it loses
    return {
        "reference_ms": round(m.reference.median_ms, 4), "variant_ms": round(m.variant.median_ms, 4),
        "speed": round(m.speed, 4), "interval": [round(m.low, 4), round(min(m.high, 1e9), 4)],
        "verdict": speed_verdict(m.low, m.high, m.speed),
    }


def _excluding(config: StaticInt8, labels: Sequence[str]) -> StaticInt8:
    exclude = dataclasses.replace(config.exclude, names=(*config.exclude.names, *labels))
    return dataclasses.replace(config, exclude=exclude, measure=False)


class _Search:
    """One latency search: the method, its inputs, and the timer."""

    def __init__(self, method: StaticInt8Method, model: Model, config: StaticInt8, stats: TensorStats | None,
                 plan: QuantPlan, timer: Timer):
        self.method, self.model, self.stats, self.timer = method, model, stats, timer
        self.quiet = dataclasses.replace(config, measure=False)
        self.found: list[Region] = []
        # every variant plans over the same model and statistics; the model carries the first plan's smoothing
        self.memo = PlanMemo(smoothquant=list(plan.extra.get("smoothquant", [])))
        if plan.payload is not None and not config.gptq:  # the first plan's weights, as ``compute`` made them
            self.memo.seed(plan.weights, plan.payload)

    def variant(self, labels: Sequence[str]) -> tuple[QuantPlan, Model]:
        config = _excluding(self.quiet, labels) if labels else self.quiet
        plan = self.method.plan(self.model, config, self.stats, memo=self.memo)
        return plan, self.method.apply(self.model, config, plan)

    def regions(self, plan: QuantPlan, full: Model, whole: PairedLatency) -> tuple[list[dict[str, Any]], list[Region]]:
        """Each region timed kept float against ``full``; the records and the regions that lose in int8."""
        graph = self.model.ir.graph
        regions = self.found = find_regions(graph, plan.decisions)
        records: list[dict[str, Any]] = []
        losing: list[Region] = []
        start = time.perf_counter()
        for region in regions:
            record: dict[str, Any] = {"region": region.index, "nodes": len(region.nodes), "op_types": region.op_types(graph)}
            records.append(record)
            why = self._untimed(len(regions), region, whole, start)
            if why:
                record.update(decision="int8", reason=why)
                continue
            try:
                _, kept_float = self.variant(region.nodes)
            except QuantscopeError as exc:  # e.g. nothing left to quantize: keep the planner's decision
                record.update(decision="int8", reason=f"not timed: {exc}")
                continue
            m = self.timer(full, kept_float)
            loses = speed_verdict(m.low, m.high, m.speed) == "faster"
            record.update(
                int8_ms=round(m.reference.median_ms, 4), float_ms=round(m.variant.median_ms, 4),
                speed=round(1 / m.speed, 4) if m.speed else None, decision="float" if loses else "int8",
                reason=("the model is measurably faster with this region float" if loses
                        else "not measurably slower in int8"),
            )
            if loses:
                losing.append(region)
        return records, losing

    def refine(self, choice: _Choice) -> tuple[_Choice, list[dict[str, Any]]]:
        """Parts of the regions still int8 (:mod:`.parts`) kept float: each part is first timed kept
        float against ``choice`` (screening), then the parts that won are added in order of their
        gain, each kept only if the model is still measurably faster with it float. Returns the
        better choice and a record per part."""
        graph = self.model.ir.graph
        records: list[dict[str, Any]] = []
        start = time.perf_counter()
        screened: list[tuple[float, Part, dict[str, Any], tuple[QuantPlan, Model]]] = []
        for region in self.found:
            for part in parts(graph, region):
                if set(part.nodes) <= set(choice.labels):
                    continue
                record: dict[str, Any] = {"part": part.name, "region": region.index, "nodes": len(part.nodes)}
                records.append(record)
                if time.perf_counter() - start > SCREEN_BUDGET_S:
                    record.update(decision="int8", reason=f"not timed: part timing stopped after {SCREEN_BUDGET_S:.0f} s")
                    continue
                timed = self._timed_without(choice, part, record)
                if timed is not None and record["verdict"] == "faster":
                    screened.append((timed[0].speed, part, record, timed[1]))
        for rank, (_, part, record, variant) in enumerate(sorted(screened, key=lambda t: -t[0])):
            if rank > 0:  # the best was timed against this very choice; the others against an older one
                if time.perf_counter() - start > REFINE_BUDGET_S:
                    record.update(reason=f"won alone, not timed with the others: stopped after {REFINE_BUDGET_S:.0f} s")
                    continue
                timed = self._timed_without(choice, part, record)
                if timed is None or record["verdict"] != "faster":
                    record.update(decision="int8", reason="won alone, not with the parts kept float before it")
                    continue
                variant = timed[1]
            record.update(decision="float", reason="the model is measurably faster with this part float")
            text = (f"kept float for speed: {part.name} measured {record['float_ms']:.3f} ms with it float "
                    f"vs {record['int8_ms']:.3f} ms int8 (model time, this machine)")
            labels = [*choice.labels, *(n for n in part.nodes if n not in choice.labels)]
            choice = _Choice(labels, {**choice.reasons, **{n: text for n in part.nodes if n not in choice.reasons}},
                             variant[0], variant[1], choice.vs_float)
        for record in records:
            record.setdefault("decision", "int8")
            record.setdefault("reason", "not measurably slower in int8")
            record.pop("verdict", None)
        return choice, records

    def _timed_without(self, choice: _Choice, part: Part, record: dict[str, Any]
                       ) -> tuple[PairedLatency, tuple[QuantPlan, Model]] | None:
        """``choice`` with ``part`` kept float too, timed against ``choice`` (into ``record``)."""
        labels = [*choice.labels, *(n for n in part.nodes if n not in choice.labels)]
        try:
            variant = self.variant(labels)
        except QuantscopeError as exc:  # nothing would be left int8: the final check decides that
            record.update(decision="int8", reason=f"not timed: {exc}")
            return None
        m = self.timer(choice.model, variant[1])
        record.update(int8_ms=round(m.reference.median_ms, 4), float_ms=round(m.variant.median_ms, 4),
                      verdict=speed_verdict(m.low, m.high, m.speed))
        return m, variant

    @staticmethod
    def _untimed(count: int, region: Region, whole: PairedLatency, start: float) -> str | None:
        if count == 1:
            return "the only region: timed as the whole model against float"
        if region.index >= MAX_REGIONS:
            return f"not timed: only the {MAX_REGIONS} largest regions are"
        if time.perf_counter() - start > BUDGET_S:
            return f"not timed: region timing stopped after {BUDGET_S:.0f} s"
        return None


def _region_reasons(losing: list[Region], records: list[dict[str, Any]]) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for region in losing:
        rec = records[region.index]
        text = (f"kept float for speed: region {region.index} ({rec['nodes']} node(s)) measured "
                f"{rec['float_ms']:.3f} ms float vs {rec['int8_ms']:.3f} ms int8 (model time, this machine)")
        reasons.update(dict.fromkeys(region.nodes, text))
    return reasons


def _kept_float(plan: QuantPlan, reasons: Mapping[str, str]) -> QuantPlan:
    """``plan`` with the nodes in ``reasons`` (kept float by the search) saying why they are float."""
    decisions = tuple(
        dataclasses.replace(d, reason=reasons[d.node]) if d.node in reasons and d.action == "float" else d
        for d in plan.decisions
    )
    return dataclasses.replace(plan, decisions=decisions)


def _all_float(plan: QuantPlan, reason: str) -> QuantPlan:
    """``plan`` with every integer node kept float: what objective speed writes when int8 loses everywhere."""
    decisions = tuple(dataclasses.replace(d, action="float", reason=reason) if d.action in INTEGER else d
                      for d in plan.decisions)
    extra = {k: v for k, v in plan.extra.items() if k not in ("bias_correction", "gptq_gain_db")}
    return dataclasses.replace(plan, decisions=decisions, activations=(), weights=(), extra=extra).with_payload({})


@dataclasses.dataclass
class _Choice:
    """The variant chosen so far: the labels kept float (with why), its plan and model, and its time against float."""

    labels: list[str]
    reasons: dict[str, str]
    plan: QuantPlan
    model: Model
    vs_float: PairedLatency


def _with_extra(plan: QuantPlan, **extra: Any) -> QuantPlan:
    return dataclasses.replace(plan, extra={**plan.extra, **extra})


def choose_regions(
    method: StaticInt8Method, model: Model, config: StaticInt8, stats: TensorStats | None, plan: QuantPlan,
    *, timer: Timer | None = None,
) -> QuantPlan:
    """``plan`` with the regions that are slower in int8 on this machine kept float (``objective="speed"``).

    Records ``extra["latency"]`` (the chosen model against float), ``extra["regions"]`` and, when
    the choice was still slower than :data:`REFINE_BELOW` against float, ``extra["parts"]``. A
    model written for speed is never measurably slower than float: when every int8 variant tried
    loses, every node is kept float (with the measured speed as the reason, and a warning).
    """
    if config.objective != "speed" or not config.measure:
        why = "--no-measure" if config.objective == "speed" else f"objective {config.objective!r}"
        return _with_extra(plan, latency={"measured": False, "reason": why})
    began = time.perf_counter()
    feeds = synthetic_feeds(model, batch=config.target_batch, seed=config.seed,
                            shapes=stats.input_shapes if stats is not None else None)
    batch = _batch_of(model, feeds)
    search = _Search(method, model, config, stats, plan,
                     timer or paired_timer(feeds, threads=config.target_threads, batch=batch, seed=config.seed))
    try:
        if timer is None and _fastest_call_ms(model, feeds, config.target_threads) < MIN_FLOAT_MS:
            return _with_extra(plan, latency={"measured": False, "reason": TOO_FAST})
        timer = search.timer
        full = method.apply(model, search.quiet, plan)
        whole = timer(model, full)
    except QuantscopeError as exc:
        logger.warning("static-int8: latency not measured (%s)", exc)
        return _with_extra(plan, latency={"measured": False, "reason": str(exc)})
    records, losing = search.regions(plan, full, whole)
    choice = _Choice([], {}, plan, full, whole)
    if losing and len(losing) < len(records):
        labels = [label for region in losing for label in region.nodes]
        candidate, written = search.variant(labels)
        measured = timer(model, written)
        if measured.speed >= whole.speed:
            choice = _Choice(labels, _region_reasons(losing, records), candidate, written, measured)
        else:
            for region in losing:
                records[region.index].update(decision="int8", reason="kept int8: the selection was not faster overall")
    part_records: list[dict[str, Any]] = []
    if choice.vs_float.speed < REFINE_BELOW:
        refined, part_records = search.refine(choice)
        if refined.labels != choice.labels:
            choice = dataclasses.replace(refined, vs_float=timer(model, refined.model))
    final = choice.vs_float
    chosen = _kept_float(choice.plan, choice.reasons)
    fallback: dict[str, Any] = {}
    if speed_verdict(final.low, final.high, final.speed) == "slower":
        fallback = {"fastest_int8": _measurement(final)}
        chosen = _all_float(plan, (
            f"kept float for speed: the fastest int8 variant found ran {final.speed:.2f}x the speed of float "
            f"on this machine (batch {batch}, {config.target_threads} thread(s))"))
        final = timer(model, method.apply(model, search.quiet, chosen))
        logger.warning("static-int8 kept every node float: int8 was slower than float on this machine")
    latency = {
        "measured": True, "batch": batch, "threads": config.target_threads,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "float_ms": round(final.reference.median_ms, 4), "int8_ms": round(final.variant.median_ms, 4),
        **{k: v for k, v in _measurement(final).items() if k in ("speed", "interval", "verdict")},
        "reference": "the prepared float model (its rewrites, e.g. folded BatchNorm, may make it faster than the original)",
        "note": "timed on the machine that quantized; another CPU may decide other regions",
        **fallback,
        "search_s": round(time.perf_counter() - began, 2),
    }
    chosen = _with_extra(chosen, latency=latency, regions=records, **({"parts": part_records} if part_records else {}))
    if not chosen.quantized_nodes:
        warning = (f"static-int8 (objective speed) kept every node float: int8 ran slower than float on this machine "
                   f"(batch {batch}, {config.target_threads} thread(s)); the file is the float model after quantscope's graph rewrites. "
                   "Use --objective size for a smaller int8 model that runs slower here")
        chosen = dataclasses.replace(chosen, warnings=(*chosen.warnings, warning))
    return chosen
