"""The one error type of every message <-> array conversion.

Nodes and offline tools catch :class:`ConversionError` around any conversion, count it in
``/diagnostics`` and go on with the next message; a plain numpy ``ValueError`` / ``IndexError``
escaping a conversion is a bug. It subclasses ``ValueError`` so older ``except ValueError``
handlers keep working.
"""

from __future__ import annotations


class ConversionError(ValueError):
    """A message cannot be converted (bad sizes, layout, encoding or payload)."""
