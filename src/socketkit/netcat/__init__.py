"""The netcat engine behind ``socketkit connect`` and ``socketkit listen``.

* :mod:`.eof` — the EOF policy as a sans-I/O state machine, with nc/ncat/socat presets.
* :mod:`.relay`, :mod:`.pumps` — one session's poll loop; splice/sendfile/copy paths.
* :mod:`.hub` — ``listen -k``: many TCP clients at once, ``--broker``, ``--chat``.
* :mod:`.udp_server` — ``listen -u``: one session per UDP peer.
* :mod:`.execs` — ``--exec``/``--sh-exec``. :mod:`.scan` — ``-z``.
"""

from __future__ import annotations

from .eof import PRESETS, EofMachine, EofPolicy
from .options import NetcatOptions, TlsOptions

__all__ = ["PRESETS", "EofMachine", "EofPolicy", "NetcatOptions", "TlsOptions"]
