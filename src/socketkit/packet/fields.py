"""Headers declared once, as tables of (field, struct format), compiled to one ``struct``.

The idea is dpkt's: a header is a list of fixed-size fields; concatenating their formats
(network byte order, no padding) gives one :class:`struct.Struct` that unpacks the whole
header in a single C call. Both the object decoder (:mod:`.decode`) and the fast summary path
(:mod:`.summary`) use these tables, so a header's layout is written exactly once.

:func:`stack` goes one step further for the hot path: it glues several headers that follow
each other (Ethernet + IPv4 + TCP, say) into *one* ``Struct``, replacing the fields the caller
does not need by pad bytes, so a whole common packet is unpacked by one ``unpack_from``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

__all__ = ["Header", "stack"]


class Header:
    """A fixed-size header: ``fields`` is a sequence of ``(name, struct_format)``.

    ``struct`` unpacks the fields in order; ``size`` is the header's length in bytes;
    ``offsets`` maps a field name to its byte offset inside the header.
    """

    __slots__ = ("fields", "name", "names", "offsets", "size", "struct")

    def __init__(self, name: str, fields: Sequence[tuple[str, str]]) -> None:
        self.name = name
        self.fields = tuple(fields)
        self.names = tuple(field for field, _fmt in self.fields)
        self.struct = struct.Struct("!" + "".join(fmt for _name, fmt in self.fields))
        self.size = self.struct.size
        offsets: dict[str, int] = {}
        position = 0
        for field, fmt in self.fields:
            offsets[field] = position
            position += struct.calcsize("!" + fmt)
        self.offsets = offsets

    def __repr__(self) -> str:
        return f"Header({self.name!r}, size={self.size})"


def stack(*layers: tuple[Header, Iterable[str]]) -> tuple[struct.Struct, tuple[str, ...]]:
    """One ``Struct`` over consecutive headers, keeping only the named fields.

    Args:
        layers: ``(header, wanted_field_names)`` pairs in wire order. Fields not wanted become
            ``x`` pad bytes, so unpacking skips them without building objects.

    Returns:
        ``(struct, names)``: the compiled struct (network order) and the names of the values it
        returns, in order, as ``"layer.field"``.

    Raises:
        ValueError: a wanted field does not exist in its header (a programming error).
    """
    fmt = ["!"]
    names: list[str] = []
    for header, wanted in layers:
        keep = set(wanted)
        unknown = keep.difference(header.names)
        if unknown:
            raise ValueError(f"{header.name} has no field(s) {sorted(unknown)}")
        for field, field_fmt in header.fields:
            if field in keep:
                fmt.append(field_fmt)
                names.append(f"{header.name}.{field}")
            else:
                fmt.append(f"{struct.calcsize('!' + field_fmt)}x")
    return struct.Struct("".join(fmt)), tuple(names)
