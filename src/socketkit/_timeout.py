"""Per-call timeouts: the "not given" marker and the check of a given value.

Every ``send``/``receive`` of the stream and datagram APIs takes ``timeout`` (seconds, or
``None`` to wait forever); when it is not given, the object's ``default_timeout`` applies.
"Not given" is :data:`UNSET`, recognised by identity: a caller's ``-1`` is a value, and a bad
value (negative, NaN, not a number) is refused at once instead of meaning "wait forever".
"""

from __future__ import annotations

import math

__all__ = ["UNSET", "check_timeout"]

#: The default of every ``timeout`` parameter: "not given". Compared with ``is`` only.
UNSET: float = float("-1")


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """``value`` as a timeout in seconds (``None`` or infinity: wait forever).

    Raises:
        TypeError: not a number (or a bool).
        ValueError: negative or NaN.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{what} must be a number of seconds >= 0 (or None to wait forever), not {value!r}"
        )
    return None if math.isinf(value) else float(value)
