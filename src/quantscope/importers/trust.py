"""What an importer would execute, found before anything is loaded: refused unless trusted.

A TensorFlow SavedModel is a program: converting it traces and runs its functions, which may
read and write files. A Keras file names the classes and functions to rebuild it with: a
``Lambda`` layer carries Python bytecode, and a custom object (a registered class, or one from a
module outside Keras) imports and runs that module's code. Both are treated like pickles:
refused without ``trust=True`` (``--trust``). PyTorch models are imported from a live
``nn.Module`` (a 'module:function' the user names), never from a ``.pt`` file, so no
``torch.load`` runs here.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from quantscope.errors import ConfigError

_CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
_SAFE_MODULES = ("keras", "tf_keras", "builtins")

TRUST_HINT = "pass trust=True (--trust on the command line) only for files you made or whose source you trust"


def refuse_saved_model(path: Path) -> None:
    raise ConfigError(
        f"{path} is a TensorFlow SavedModel: converting it runs its graph (its functions can read and "
        f"write files and run any TensorFlow op), so it is not loaded by default; {TRUST_HINT}"
    )


def _keras_config(path: Path) -> Any:
    """The model config JSON of a ``.keras`` (zip) or ``.h5`` file; None when it cannot be read."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get("model_config")
        return json.loads(raw) if raw is not None else None
    except Exception:  # unreadable here: Keras's own loader (safe mode) reports it
        return None


def keras_code_objects(path: Path) -> list[str]:
    """The Lambda layers and custom objects a Keras file would rebuild (by name), sorted."""
    found: set[str] = set()
    stack = [_keras_config(path)]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            cls, module, registered = item.get("class_name"), item.get("module"), item.get("registered_name")
            if cls in _CODE_CLASSES:
                found.add(f"{cls} layer")
            elif isinstance(module, str) and module and not module.startswith(_SAFE_MODULES):
                found.add(f"{module}.{cls}")
            elif isinstance(registered, str) and ">" in registered:
                found.add(registered)
            stack.extend(item.values())
    return sorted(found)


def check_keras_file(path: Path, trust: bool) -> None:
    """Refuse a Keras file holding code (Lambda layers, custom objects) unless ``trust``."""
    if trust:
        return
    code = keras_code_objects(path)
    if code:
        raise ConfigError(
            f"{path} holds code that runs when it loads ({', '.join(code[:5])}); {TRUST_HINT}"
        )
