"""``python -m xalign.cli``: the ``xalign`` command."""

from xalign.cli import main

main()
