"""One error hierarchy: every error xalign reports to a user derives from :class:`XalignError`.

The CLI catches ``XalignError`` only and prints its message (which names the file, line, key
or plugin at fault); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class XalignError(Exception):
    """Base of every user-facing xalign error; the message says what and where."""
