"""iperf3's ``i_errno`` numbers (the enum in iperf_api.h) carried by SERVER_ERROR."""

from __future__ import annotations

__all__ = ["IE", "describe_server_error"]


class IE:
    """The ``i_errno`` values socketkit's server sends."""

    DURATION = 5  # test duration too long
    NUMSTREAMS = 6  # too many parallel streams
    BLOCKSIZE = 7
    UNIMP = 13  # not implemented
    RECVCOOKIE = 106
    CTRLREAD = 108
    CTRLCLOSE = 109
    MESSAGE = 110  # unknown control message
    RECVPARAMS = 114
    RECVRESULTS = 117
    ACCESSDENIED = 121
    SETNODELAY = 122
    SETMSS = 123
    SETBUF = 124
    SETTOS = 125
    STREAMACCEPT = 204
    STREAMID = 208


_MESSAGES = {
    5: "test duration too long (IEDURATION)",
    6: "too many parallel streams (IENUMSTREAMS)",
    7: "block size too large (IEBLOCKSIZE)",
    13: "a requested feature is not supported by the server (IEUNIMP)",
    106: "the server could not receive the cookie (IERECVCOOKIE)",
    108: "the server could not read the control connection (IECTRLREAD)",
    109: "the control connection closed unexpectedly (IECTRLCLOSE)",
    110: "the server received an unknown control message (IEMESSAGE)",
    114: "the server could not receive the parameters (IERECVPARAMS)",
    117: "results could not be exchanged (IERECVRESULTS)",
    119: "the client terminated (IECLIENTTERM)",
    120: "the server terminated (IESERVERTERM)",
    121: "the server is busy running a test (IEACCESSDENIED)",
    122: "the server could not set TCP_NODELAY (IESETNODELAY)",
    123: "the server could not set the TCP MSS (IESETMSS)",
    124: "the server could not set the socket buffer size (IESETBUF)",
    125: "the server could not set the IP TOS (IESETTOS)",
    204: "the server could not accept the data streams (IESTREAMACCEPT)",
    208: "stream id mismatch (IESTREAMID)",
}


def describe_server_error(i_errno: int) -> str:
    return _MESSAGES.get(i_errno, f"iperf3 error number {i_errno}")
