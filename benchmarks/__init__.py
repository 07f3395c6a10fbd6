"""xalign's benchmarks (``python -m benchmarks``).

``xalign`` is imported first so that its OpenMP wait policy is set before torch starts
(xalign/threads.py): the benchmarks measure xalign as a user runs it.
"""

import xalign  # noqa: F401
