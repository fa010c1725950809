"""``python -m quantscope.cli``: the same as the ``quantscope`` command."""

import sys

try:
    from quantscope.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: one line, no traceback
    sys.stderr.write("interrupted (Ctrl-C) while starting; nothing was written\n")
    sys.exit(130)

main(prog_name="quantscope")
