"""Word-alignment link sets and their algebra: re-exported from :mod:`xalign.links`.

:mod:`xalign.links` is the one home of links (the ``Links`` type, symmetrisation, Pharaoh I/O,
``LinkSpec``, corpus links); this module keeps the ``xalign.alignment`` import path that
plugins use.
"""

from __future__ import annotations

from xalign.links import (
    SYMMETRIZATION_METHODS,
    SYMMETRIZATIONS,
    Links,
    LinkSpec,
    drop_identical,
    format_pharaoh,
    links_digest,
    links_text,
    one_to_one,
    parse_pharaoh,
    read_links_file,
    symmetrize,
    transpose,
)

__all__ = [
    "SYMMETRIZATIONS",
    "SYMMETRIZATION_METHODS",
    "LinkSpec",
    "Links",
    "drop_identical",
    "format_pharaoh",
    "links_digest",
    "links_text",
    "one_to_one",
    "parse_pharaoh",
    "read_links_file",
    "symmetrize",
    "transpose",
]
