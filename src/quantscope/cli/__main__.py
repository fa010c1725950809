"""``python -m quantscope.cli``: the same as the ``quantscope`` command."""

import sys


def _by_ctrl_c(exc: BaseException | None) -> bool:
    """Ctrl-C in ``exc``'s chain (one during a C extension's start comes out as its ImportError)."""
    for _ in range(32):
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


try:
    from quantscope.cli import main
except (KeyboardInterrupt, ImportError) as exc:  # Ctrl-C while the libraries load: one line, no traceback
    if not _by_ctrl_c(exc):
        raise
    sys.stderr.write("interrupted (Ctrl-C) while starting; nothing was written\n")
    sys.exit(130)

main(prog_name="quantscope")
