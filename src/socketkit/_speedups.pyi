# The C extension's interface (_speedups.c); used through socketkit/_accel.py only.
from collections.abc import Callable
from typing import Any

SYNC_RECEIVE_SOME: int
SYNC_SEND_ALL: int
AIO_SEND_ALL: int
AIO_RECEIVE_SOME: int
AIO_RECEIVE_INTO: int
DATA_RECEIVED: int
STEP: int
SYNC_DGRAM_RECEIVE: int
SYNC_DGRAM_SEND: int

class FastMethod:
    __wrapped__: Callable[..., Any]
    def __init__(self, kind: int, func: Callable[..., Any]) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, cls: type | None = None) -> Any: ...

def configure_aio(
    *,
    stream: type,
    protocol: type,
    driver: type,
    driven: object,
    running: object,
    no_data: object,
    done: Callable[[], Any],
    unset: float,
    enter_task: Callable[[Any, Any], None],
    leave_task: Callable[[Any, Any], None],
    cancelled_error: type[BaseException],
    awaiting_some: Callable[[Any], Any],
    awaiting_into: Callable[[Any], Any],
) -> None: ...

# Batched datagrams (socketkit/_udp_batch.py).
def configure_udp(datagram: type, decode_address: Callable[[bytes], Any], /) -> None: ...
def udp_send_many(fd: int, family: int, items: Any, to: Any, gso_limit: int, /) -> int | None: ...
def udp_receive_many(
    fd: int, max_count: int, max_size: int, gro: bool, drops: Any, /
) -> tuple[list[Any], bool]: ...
