"""Readable layer names: the module path an exporter recorded in a node's metadata.

PyTorch's exporter names nodes after FX values (``getitem_21``, ``node_linear_3``) but records
where each came from: ``pkg.torch.onnx.name_scopes`` (e.g. ``['', 'encoder', 'encoder.layer.0',
'linear']``), ``namespace`` (``': M/encoder: Encoder/encoder.layer.0: Layer/linear: ...'``); other
tools write ``source``. The report shows that path where it is present.
"""

from __future__ import annotations

import ast

import onnx_ir as ir

from quantscope.graph.queries import node_label
from quantscope.io import Model

SCOPES = "pkg.torch.onnx.name_scopes"


def module_path(node: ir.Node) -> str:
    """The node's module path (``encoder.layer.0/linear``) from its metadata, or ``""``."""
    meta = node.metadata_props
    scopes = _literal_list(meta.get(SCOPES))
    if scopes:
        named = [s for s in scopes if s]
        if not named:
            return ""
        modules, leaf = named[:-1], named[-1]
        return f"{modules[-1]}/{leaf}" if modules else leaf
    namespace = meta.get("namespace")
    if namespace:
        names = [part.split(":", 1)[0].strip() for part in namespace.split("/")]
        names = [n for n in names if n]
        if names:
            return "/".join(names[-2:]) if len(names) > 1 else names[0]
    return str(meta.get("source", "")).strip()


def module_paths(model: Model) -> dict[str, str]:
    """Node label -> module path, for the nodes of ``model``'s main graph that have one."""
    out: dict[str, str] = {}
    for node in model.ir.graph:
        path = module_path(node)
        if path:
            out[node_label(node)] = path
    return out


def _literal_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else []
