"""``python -m quantscope.cli``: the same as the ``quantscope`` command."""

from quantscope.cli import main

main(prog_name="quantscope")
