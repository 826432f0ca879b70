/* socketkit._speedups: C fast paths for the per-message hot path (docs/design.md, "C fast paths").
 *
 * One idea, used for each method listed below: a FastMethod replaces a Python method on a
 * class. It is a method descriptor (called without a bound-method object, like a C method)
 * that checks, in C, that the call is the common case -- the one the Python method's own fast
 * branch handles -- and does that case without running any Python code. Every other call goes
 * to the Python method it wraps (``__wrapped__``), unchanged. So the Python code stays the
 * definition of what each method does; this file only removes the interpreter from the
 * everyday path.
 *
 *   sync  Stream.receive_some   recv(2) with the GIL released (small reads via a scratch buffer)
 *   sync  Stream.send_all       send(2); a message of up to 64 KiB is first offered with
 *                               MSG_DONTWAIT while the GIL is held, so a thread that sends a
 *                               reply does not hand the GIL to another thread and queue to get
 *                               it back (one GIL hand-off less per message)
 *   aio   Stream.send_all       transport.write, and a coroutine that returns at once
 *   aio   DrivenStream.receive_some   the awaitable that yields DRIVEN (driver.py)
 *   aio   Stream.receive_into  its first, non-blocking recv into the caller's buffer
 *   aio   StreamProtocol.data_received   bytes handed straight to a DRIVEN reader
 *   aio   HandlerDriver._step   resume the handler coroutine (PyIter_Send in its context)
 *   sync  DatagramSocket.receive  recvmsg(2) straight to a Datagram (socketkit/_sync/udp.py)
 *   sync  DatagramSocket.send     send(2) on a connected datagram socket, as send_all offers it
 *   aio   serve_udp's protocol datagram_received   the peer looked up and its handler,
 *                               waiting in ``async for``, resumed with the bytes
 *   aio   Conversation.send     transport.sendto, and the finished future
 *   aio   Conversation.__anext__   the awaitable that yields DRIVEN
 *
 * And, called directly by socketkit/_udp_batch.py (which keeps the same in Python, and the
 * ctypes fallback): udp_send_many / udp_receive_many, sendmmsg/recvmmsg batches with GSO runs
 * and GRO buffers split back into Datagram objects; and tftp_lockstep, a TFTP windowsize-1
 * transfer's per-block loop (socketkit/tftp/_channel.py keeps it in Python too).
 *
 * Set SOCKETKIT_PURE=1 to run without this module (socketkit/_accel.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <stddef.h>
#include <structmember.h>
#include <sys/socket.h>
#include <time.h>

enum {
    K_SYNC_RECEIVE_SOME,
    K_SYNC_SEND_ALL,
    K_AIO_SEND_ALL,
    K_AIO_RECEIVE_SOME,
    K_AIO_RECEIVE_INTO,
    K_DATA_RECEIVED,
    K_STEP,
    K_SYNC_DGRAM_RECEIVE,
    K_SYNC_DGRAM_SEND,
    K_UDP_DATAGRAM_RECEIVED,
    K_UDP_SEND,
    K_UDP_ANEXT,
    K_COUNT
};

#define DEFAULT_RECEIVE_SIZE 65536
/* Larger messages are sent with the GIL released from the start: the kernel may copy for a
 * while, and other threads should run meanwhile. */
#define HELD_SEND_MAX 65536

/* Objects from the Python side (configure_aio). */
static PyObject *DRIVEN, *RUNNING, *NO_DATA, *DONE, *AIO_UNSET, *ENTER_TASK, *LEAVE_TASK,
    *CANCELLED_ERROR, *AWAITING_SOME, *AWAITING_INTO;

/* The asyncio side's classes, and where their __slots__ live in an instance (configure_aio):
 * the fast paths read and write those slots directly, after a type check. */
static PyTypeObject *STREAM_T, *PROTOCOL_T, *DRIVER_T;
static Py_ssize_t o_closed, o_p, o_transport, o_default_timeout, o_buffer, o_driver, o_eof,
    o_error, o_read_waiter, o_some, o_reading_paused, o_tls, o_write_paused, o_state,
    o_must_cancel, o_loop, o_context, o_coro, o_waiting;
#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline void
slot_set(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = SLOT(obj, off);
    SLOT(obj, off) = Py_NewRef(value);
    Py_XDECREF(old);
}

/* PyObject_TypeCheck against one of the three classes, remembering the last subclass that
 * passed (there are few: DrivenStream, the server's protocol classes), so the everyday check
 * is one comparison rather than a walk of the MRO. */
static PyTypeObject *seen_stream, *seen_protocol, *seen_driver;

static inline int
is_a(PyObject *obj, PyTypeObject *type, PyTypeObject **seen)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t == type || t == *seen)
        return 1;
    if (!PyType_IsSubtype(t, type))
        return 0;
    Py_XSETREF(*seen, (PyTypeObject *)Py_NewRef(t));
    return 1;
}

#define IS_STREAM(o) is_a((o), STREAM_T, &seen_stream)
#define IS_PROTOCOL(o) is_a((o), PROTOCOL_T, &seen_protocol)
#define IS_DRIVER(o) is_a((o), DRIVER_T, &seen_driver)

/* Interned attribute names (the sync Stream has no __slots__; the rest are method names). */
static PyObject *s_direct, *s_sock, *s_eof, *s_error_m, *s_is_closing, *s_write, *s_drain,
    *s_step, *s_suspend, *s_conclude, *s_receive, *s_send, *s_throw, *s_close, *s_get_extra_info,
    *s_socket, *s_fileno, *s_receive_into_waiting, *s_read_failed;

/* ---- FastMethod ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int kind;
    PyObject *func; /* the Python method: every call that is not the fast case */
    vectorcallfunc vectorcall;
} FastMethod;

static PyTypeObject FastMethodType;

static PyObject *
slow(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(m->func, args, nargsf, kwnames);
}

/* Attribute `name` of `obj` is exactly `value` (a new lookup each time: no caching). 1/0/-1. */
static int
attr_is(PyObject *obj, PyObject *name, PyObject *value)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int same = v == value;
    Py_DECREF(v);
    return same;
}

/* The exception being raised, taken out (normalized, its traceback attached): a new
 * reference. (PyErr_GetRaisedException from 3.12 on.) */
static PyObject *
take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_XDECREF(type);
    return value;
}

/* Raise self._error(exc, what) from exc, where exc is the OSError for errno `err`. */
static PyObject *
raise_translated(PyObject *self, int err, PyObject *what)
{
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *value = take_exception();
    PyObject *mapped = PyObject_CallMethodObjArgs(self, s_error_m, value, what, NULL);
    if (mapped == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    Py_INCREF(value);
    PyException_SetContext(mapped, value);
    PyException_SetCause(mapped, value); /* steals; also sets __suppress_context__ */
    PyErr_SetObject((PyObject *)Py_TYPE(mapped), mapped);
    Py_DECREF(mapped);
    return NULL;
}

/* Wait until fd is ready (the socket was made non-blocking behind our back). GIL released. */
static int
wait_fd(int fd, short events)
{
    struct pollfd pfd = {fd, events, 0};
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = poll(&pfd, 1, -1);
    Py_END_ALLOW_THREADS
    return r < 0 ? errno : 0;
}

/* After recv/send failed with *err: 1 to try again (the socket became ready, or a signal
 * came and its handler raised nothing), 0 to report *err, -1 if a signal handler raised. */
static int
again(int *err, int fd, short events)
{
    if (*err == EAGAIN || *err == EWOULDBLOCK) {
        *err = wait_fd(fd, events);
        if (*err == 0)
            return 1;
    }
    if (*err == EINTR)
        return PyErr_CheckSignals() < 0 ? -1 : 1;
    return 0;
}

/* The sync stream's fd while it is direct (plain socket, no timeout, nothing buffered): -1
 * when it is not (the Python method's case), -2 with an exception set. */
static int
direct_fd(PyObject *self)
{
    int direct = attr_is(self, s_direct, Py_True);
    if (direct <= 0)
        return direct < 0 ? -2 : -1;
    /* Asked of the socket each time, not cached: a socket closed behind the stream's back says
     * -1 (the Python method then raises), never a number since given to another file. */
    PyObject *sock = PyObject_GetAttr(self, s_sock);
    if (sock == NULL)
        return -2;
    PyObject *v = PyObject_CallMethodNoArgs(sock, s_fileno);
    Py_DECREF(sock);
    if (v == NULL)
        return -2;
    long fd = PyLong_AsLong(v);
    Py_DECREF(v);
    if (fd == -1 && PyErr_Occurred())
        return -2;
    return fd < 0 || fd > INT_MAX ? -1 : (int)fd;
}
/* Small reads (requests, echoes) land in a per-thread scratch buffer and are copied out at
 * their size: one small allocation, where reading into a max_bytes object costs a 64 KiB
 * allocation shrunk after the read (what socket.recv does). A thread whose last read was
 * large (a bulk reader) reads straight into a max_bytes object: no copy. */
#define SCRATCH_SIZE 65536
#define SMALL_READ 4096

typedef struct {
    Py_ssize_t last; /* the thread's last read */
    char buf[SCRATCH_SIZE];
} Scratch;

static pthread_key_t scratch_key; /* the thread's Scratch, freed when the thread ends */

static Scratch *
thread_scratch(void)
{
    Scratch *sc = pthread_getspecific(scratch_key);
    if (sc == NULL) {
        sc = malloc(sizeof(Scratch));
        if (sc == NULL)
            return NULL;
        sc->last = 0;
        if (pthread_setspecific(scratch_key, sc) != 0) {
            free(sc);
            return NULL;
        }
    }
    return sc;
}

/* sync Stream.receive_some(max_bytes=65536) while the stream is direct. */
static PyObject *
sync_receive_some(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 1 || nargs > 2)
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    Py_ssize_t size = DEFAULT_RECEIVE_SIZE;
    if (nargs == 2) {
        if (!PyLong_CheckExact(args[1]))
            return slow(m, args, nargsf, kwnames);
        size = PyLong_AsSsize_t(args[1]);
        if (size <= 0) {
            PyErr_Clear();
            return slow(m, args, nargsf, kwnames);
        }
    }
    int fd = direct_fd(self);
    if (fd < 0)
        return fd == -2 ? NULL : slow(m, args, nargsf, kwnames);

    Scratch *sc = size <= SCRATCH_SIZE ? thread_scratch() : NULL;
    PyObject *data = NULL;
    char *into;
    if (sc != NULL && sc->last <= SMALL_READ) {
        into = sc->buf;
    } else {
        sc = NULL;
        data = PyBytes_FromStringAndSize(NULL, size);
        if (data == NULL)
            return NULL;
        into = PyBytes_AS_STRING(data);
    }
    ssize_t n;
    int err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = recv(fd, into, (size_t)size, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0)
            break;
        int retry = again(&err, fd, POLLIN);
        if (retry > 0)
            continue;
        if (retry < 0)
            goto fail;
        Py_XDECREF(data);
        return raise_translated(self, err, s_receive);
    }
    Scratch *mine = pthread_getspecific(scratch_key);
    if (mine != NULL)
        mine->last = n;
    if (n == 0) {
        Py_XDECREF(data);
        if (PyObject_SetAttr(self, s_eof, Py_True) < 0 ||
            PyObject_SetAttr(self, s_direct, Py_False) < 0)
            return NULL;
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (data == NULL)
        return PyBytes_FromStringAndSize(sc->buf, n);
    if (n != size && _PyBytes_Resize(&data, n) < 0)
        return NULL;
    return data;
fail:
    Py_XDECREF(data);
    return NULL;
}

/* sync Stream.send_all(data) while the stream is direct. */
static PyObject *
sync_send_all(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2)
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    int fd = direct_fd(self);
    if (fd < 0)
        return fd == -2 ? NULL : slow(m, args, nargsf, kwnames);
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* not a contiguous byte buffer: the Python method says what is wrong */
        return slow(m, args, nargsf, kwnames);
    }
    const char *p = view.buf;
    size_t left = (size_t)view.len;
    int err = 0;
    if (left <= HELD_SEND_MAX) {
        while (left > 0) {
            ssize_t n = send(fd, p, left, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0) {
                p += n;
                left -= (size_t)n;
            } else if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto fail;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            } else {
                err = errno;
                goto error;
            }
        }
    }
    while (left > 0) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = send(fd, p, left, MSG_NOSIGNAL);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            p += n;
            left -= (size_t)n;
            /* A signal can cut a send short without EINTR: run its handler before going on
             * (as socket.sendall does), or Ctrl-C waits for the peer. */
            if (left > 0 && PyErr_CheckSignals() < 0)
                goto fail;
            continue;
        }
        int retry = again(&err, fd, POLLOUT);
        if (retry > 0)
            continue;
        if (retry < 0)
            goto fail;
        goto error;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    PyBuffer_Release(&view);
    return raise_translated(self, err, s_send);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* transport.is_closing() / transport.write(data), with args[0] the transport: through the
 * method descriptors found once per transport class (uvloop's are C methods and its
 * transports have no instance dict to shadow them), else the ordinary method call. */
static PyTypeObject *tr_type;
static PyObject *tr_is_closing, *tr_write;

static PyObject *
call_transport(PyObject *name, PyObject *const *args, size_t nargs)
{
    PyTypeObject *t = Py_TYPE(args[0]);
    if (t != tr_type && t->tp_dictoffset == 0) {
        PyObject *a = _PyType_Lookup(t, s_is_closing), *b = _PyType_Lookup(t, s_write);
        if (a != NULL && b != NULL &&
            PyType_HasFeature(Py_TYPE(a), Py_TPFLAGS_METHOD_DESCRIPTOR) &&
            PyType_HasFeature(Py_TYPE(b), Py_TPFLAGS_METHOD_DESCRIPTOR)) {
            Py_XSETREF(tr_is_closing, Py_NewRef(a));
            Py_XSETREF(tr_write, Py_NewRef(b));
            Py_XSETREF(tr_type, (PyTypeObject *)Py_NewRef(t));
        }
    }
    if (t == tr_type)
        return PyObject_Vectorcall(name == s_write ? tr_write : tr_is_closing, args, nargs, NULL);
    return PyObject_VectorcallMethod(name, args, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* aio Stream.send_all(data): write to the transport; unless paused, a coroutine that returns
 * at once. */
static PyObject *
aio_send_all(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2 || STREAM_T == NULL)
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    if (!IS_STREAM(self) || SLOT(self, o_closed) != Py_False)
        return slow(m, args, nargsf, kwnames);
    PyObject *p = SLOT(self, o_p), *transport = SLOT(self, o_transport);
    if (p == NULL || transport == NULL || !IS_PROTOCOL(p) ||
        SLOT(p, o_error) != Py_None || SLOT(p, o_tls) != Py_None)
        return slow(m, args, nargsf, kwnames);
    Py_INCREF(p);
    Py_INCREF(transport);
    PyObject *r = call_transport(s_is_closing, &transport, 1);
    int ok = r == NULL ? -1 : r == Py_False;
    Py_XDECREF(r);
    if (ok > 0) {
        PyObject *call[2] = {transport, args[1]};
        r = call_transport(s_write, call, 2);
        if (r == NULL) {
            /* Nothing was written: the Python method tries again and says what is wrong. */
            PyErr_Clear();
            ok = 0;
        }
        Py_XDECREF(r);
    }
    Py_DECREF(transport);
    if (ok <= 0) {
        Py_DECREF(p);
        return ok < 0 ? NULL : slow(m, args, nargsf, kwnames);
    }
    int paused = SLOT(p, o_write_paused) != Py_False;
    Py_DECREF(p);
    if (!paused) /* a new coroutine that returns at once (stream.py's _sent) */
        return PyObject_CallNoArgs(DONE);
    Py_ssize_t size = PyObject_Length(args[1]);
    if (size < 0)
        return NULL;
    PyObject *n = PyLong_FromSsize_t(size);
    if (n == NULL)
        return NULL;
    PyObject *waiting = PyObject_CallMethodObjArgs(self, s_drain, n, AIO_UNSET, NULL);
    Py_DECREF(n);
    return waiting;
}

/* ---- DrivenRead: what the aio receive_some and receive_into await ----------------------- */

/* receive_some (of a DrivenStream): awaited by the handler itself while it runs (the driver's
 * state is RUNNING), it yields DRIVEN once and returns what the protocol sends in. Awaited
 * anywhere else (another task, asyncio.wait_for), it runs the Python receive_some instead, as
 * the generator it replaces would: the check happens when the await starts, not when
 * receive_some is called.
 *
 * receive_into (of any aio Stream): when the await starts, one non-blocking recv straight
 * into the caller's buffer; if the kernel has nothing yet, the Python method's waiting part
 * (Stream._receive_into_waiting) takes over.
 *
 * A plain DrivenRead (udp_anext: aio Conversation.__anext__) yields DRIVEN once and returns
 * what the driver sends in, as the ``_driven()`` generator in _async/udp_server.py.
 *
 * The stream methods return a coroutine that awaits the DrivenRead (stream.py's _awaiting_some
 * and _awaiting_into), not the DrivenRead itself: what an asyncio user may do with a coroutine
 * (create_task, run_coroutine_threadsafe, inspect.iscoroutine, a second await raising
 * RuntimeError) then works as with the Python methods. */
typedef struct {
    PyObject_HEAD
    PyObject *stream;
    PyObject *arg;   /* receive_some: max_bytes (NULL: the default); receive_into: the buffer */
    PyObject *func;  /* the Python method */
    PyObject *inner; /* the Python coroutine or generator, once delegated */
    int into;        /* a receive_into */
    int plain;       /* a Conversation's wait: yields DRIVEN once, returns what is sent in */
    int yielded;
} DrivenRead;

static PyTypeObject DrivenReadType;

static int
dr_clear(DrivenRead *self)
{
    Py_CLEAR(self->stream);
    Py_CLEAR(self->arg);
    Py_CLEAR(self->func);
    Py_CLEAR(self->inner);
    return 0;
}

static void
dr_dealloc(DrivenRead *self)
{
    PyObject_GC_UnTrack(self);
    dr_clear(self);
    PyObject_GC_Del(self);
}

static int
dr_traverse(DrivenRead *self, visitproc visit, void *arg)
{
    Py_VISIT(self->stream);
    Py_VISIT(self->arg);
    Py_VISIT(self->func);
    Py_VISIT(self->inner);
    return 0;
}

static PyObject *
dr_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

/* The fast case holds: the stream's own handler awaits with nothing buffered. Returns the
 * protocol (borrowed), NULL if not (an error set if one happened). */
static PyObject *
dr_can_drive(DrivenRead *self)
{
    PyObject *stream = self->stream;
    if (SLOT(stream, o_closed) != Py_False || SLOT(stream, o_default_timeout) != Py_None)
        return NULL;
    PyObject *p = SLOT(stream, o_p);
    if (p == NULL || !IS_PROTOCOL(p))
        return NULL;
    PyObject *driver = SLOT(p, o_driver);
    if (driver == NULL || !IS_DRIVER(driver) ||
        SLOT(driver, o_waiting) != RUNNING)
        return NULL;
    PyObject *buffer = SLOT(p, o_buffer);
    if (buffer != NO_DATA) {
        Py_ssize_t len = buffer == NULL ? -1 : PyObject_Length(buffer);
        if (len != 0)
            return NULL;
    }
    if (SLOT(p, o_eof) != Py_False || SLOT(p, o_read_waiter) != Py_None ||
        SLOT(p, o_reading_paused) != Py_False)
        return NULL;
    return p;
}

/* Delegate to the Python coroutine meth(stream, *self->arg...) and run it. */
static PySendResult
dr_delegate(DrivenRead *self, PyObject *meth, PyObject *arg, PyObject **result)
{
    self->inner = self->arg == NULL
                      ? PyObject_CallOneArg(meth, self->stream)
                      : PyObject_CallFunctionObjArgs(meth, self->stream, self->arg, NULL);
    if (self->inner == NULL) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    return PyIter_Send(self->inner, arg, result);
}

/* The socket's fd, if the stream is open, reads plain bytes with nothing buffered and its
 * transport is not closing (so the fd is the transport's, still open); else -1. */
static int
dr_readable_fd(PyObject *stream)
{
    PyObject *p = SLOT(stream, o_p), *transport = SLOT(stream, o_transport);
    if (SLOT(stream, o_closed) != Py_False || p == NULL || transport == NULL ||
        !IS_PROTOCOL(p) || SLOT(p, o_tls) != Py_None ||
        SLOT(p, o_eof) != Py_False)
        return -1;
    PyObject *buffer = SLOT(p, o_buffer);
    if (buffer != NO_DATA && (buffer == NULL || PyObject_Length(buffer) != 0))
        return -1; /* (an error from len() is the Python method's to raise) */
    Py_INCREF(transport);
    int fd = -1;
    PyObject *r = call_transport(s_is_closing, &transport, 1);
    if (r == Py_False) {
        PyObject *sock = PyObject_CallMethodOneArg(transport, s_get_extra_info, s_socket);
        if (sock != NULL && sock != Py_None) {
            PyObject *n = PyObject_CallMethodNoArgs(sock, s_fileno);
            if (n != NULL) {
                long v = PyLong_AsLong(n);
                fd = v < 0 || v > INT_MAX ? -1 : (int)v;
                Py_DECREF(n);
            }
        }
        Py_XDECREF(sock);
    }
    Py_XDECREF(r);
    Py_DECREF(transport);
    PyErr_Clear(); /* any failure here: the Python method finds it again and says so */
    return fd;
}

static PySendResult
dr_read_into(DrivenRead *self, PyObject *arg, PyObject **result)
{
    int fd = dr_readable_fd(self->stream);
    Py_buffer view;
    if (fd < 0 || PyObject_GetBuffer(self->arg, &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return dr_delegate(self, self->func, arg, result);
    }
    ssize_t n = view.len > 0 ? recv(fd, view.buf, (size_t)view.len, MSG_DONTWAIT) : -1;
    int err = view.len > 0 ? errno : EAGAIN;
    PyBuffer_Release(&view);
    if (n >= 0) {
        if (n == 0) /* EOF: the transport will see the same on its next read */
            slot_set(SLOT(self->stream, o_p), o_eof, Py_True);
        self->yielded = 1;
        *result = PyLong_FromSsize_t(n);
        return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
    }
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        PyObject *wait = PyObject_GetAttr(self->stream, s_receive_into_waiting);
        if (wait == NULL) {
            *result = NULL;
            return PYGEN_ERROR;
        }
        self->inner = PyObject_CallOneArg(wait, self->arg);
        Py_DECREF(wait);
        if (self->inner == NULL) {
            *result = NULL;
            return PYGEN_ERROR;
        }
        return PyIter_Send(self->inner, arg, result);
    }
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *exc = take_exception();
    PyObject *r = PyObject_CallMethodOneArg(self->stream, s_read_failed, exc); /* raises */
    Py_DECREF(exc);
    Py_XDECREF(r);
    self->yielded = 1;
    *result = NULL;
    return PYGEN_ERROR;
}

static PySendResult
dr_send(DrivenRead *self, PyObject *arg, PyObject **result)
{
    if (self->inner != NULL)
        return PyIter_Send(self->inner, arg, result);
    if (self->yielded) {
        *result = Py_NewRef(arg);
        return PYGEN_RETURN;
    }
    if (self->plain) {
        self->yielded = 1;
        *result = Py_NewRef(DRIVEN);
        return PYGEN_NEXT;
    }
    if (self->stream == NULL) { /* cleared by the garbage collector */
        PyErr_SetString(PyExc_RuntimeError, "a receive awaited after it was collected");
        goto error;
    }
    if (self->into)
        return dr_read_into(self, arg, result);
    PyObject *p = dr_can_drive(self);
    if (p != NULL) {
        PyObject *some = self->arg;
        some = some == NULL ? PyLong_FromLong(DEFAULT_RECEIVE_SIZE) : Py_NewRef(some);
        if (some == NULL)
            goto error;
        slot_set(p, o_some, some);
        Py_DECREF(some);
        slot_set(p, o_read_waiter, DRIVEN);
        self->yielded = 1;
        *result = Py_NewRef(DRIVEN);
        return PYGEN_NEXT;
    }
    if (PyErr_Occurred())
        goto error;
    return dr_delegate(self, self->func, arg, result);
error:
    *result = NULL;
    return PYGEN_ERROR;
}

/* Raise StopIteration(value) and drop our reference to value. */
static void
stop_with(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
    } else {
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, value);
        if (e != NULL) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    }
    Py_DECREF(value);
}

/* send(arg) as a generator method: the yielded value, or StopIteration(return value). */
static PyObject *
dr_send_method(DrivenRead *self, PyObject *arg)
{
    PyObject *result;
    PySendResult status = dr_send(self, arg, &result);
    if (status == PYGEN_NEXT)
        return result;
    if (status == PYGEN_RETURN)
        stop_with(result);
    return NULL;
}

static PyObject *
dr_iternext(DrivenRead *self)
{
    return dr_send_method(self, Py_None);
}

/* throw(exc) / throw(type[, value[, traceback]]): into the delegate, or raised here (the
 * DRIVEN wait has no state to unwind: the driver already told the protocol). */
static PyObject *
dr_throw(DrivenRead *self, PyObject *args)
{
    if (self->inner != NULL) {
        PyObject *meth = PyObject_GetAttr(self->inner, s_throw);
        if (meth == NULL)
            return NULL;
        PyObject *r = PyObject_Call(meth, args, NULL);
        Py_DECREF(meth);
        return r;
    }
    PyObject *typ, *val = Py_None, *tb = Py_None;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb))
        return NULL;
    self->yielded = 1; /* finished: a later send returns its value, as nothing is waiting */
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val == Py_None ? NULL : val);
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
        return NULL;
    }
    if (tb != Py_None && PyTraceBack_Check(tb)) {
        PyObject *t, *v, *old;
        PyErr_Fetch(&t, &v, &old);
        PyErr_NormalizeException(&t, &v, &old);
        Py_XDECREF(old);
        Py_INCREF(tb);
        PyErr_Restore(t, v, tb);
    }
    return NULL;
}

static PyObject *
dr_close(DrivenRead *self, PyObject *unused)
{
    if (self->inner != NULL)
        return PyObject_CallMethodNoArgs(self->inner, s_close);
    Py_RETURN_NONE;
}

static PyMethodDef dr_methods[] = {
    {"send", (PyCFunction)dr_send_method, METH_O, NULL},
    {"throw", (PyCFunction)dr_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)dr_close, METH_NOARGS, NULL},
    {NULL},
};

static PyAsyncMethods dr_async = {
    .am_await = dr_await,
    .am_send = (sendfunc)dr_send,
};

static PyTypeObject DrivenReadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "socketkit._speedups.DrivenRead",
    .tp_basicsize = sizeof(DrivenRead),
    .tp_dealloc = (destructor)dr_dealloc,
    .tp_as_async = &dr_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The awaitable of a driven handler's receive_some / receive_into, or (plain) "
              "of a Conversation's __anext__.",
    .tp_traverse = (traverseproc)dr_traverse,
    .tp_clear = (inquiry)dr_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)dr_iternext,
    .tp_methods = dr_methods,
};

static PyObject *
new_read(PyObject *stream, PyObject *arg, PyObject *func, int into)
{
    DrivenRead *r = PyObject_GC_New(DrivenRead, &DrivenReadType);
    if (r == NULL)
        return NULL;
    r->stream = Py_NewRef(stream);
    r->arg = Py_XNewRef(arg);
    r->func = Py_NewRef(func);
    r->inner = NULL;
    r->into = into;
    r->plain = 0;
    r->yielded = 0;
    PyObject_GC_Track(r);
    return (PyObject *)r;
}

/* A coroutine awaiting `read` (a new DrivenRead, whose reference is taken). */
static PyObject *
as_coroutine(PyObject *wrap, PyObject *read)
{
    if (read == NULL)
        return NULL;
    PyObject *coro = PyObject_CallOneArg(wrap, read);
    Py_DECREF(read);
    return coro;
}

/* aio DrivenStream.receive_some(max_bytes=65536): the coroutine; all checks happen when it
 * is awaited. */
static PyObject *
aio_receive_some(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 1 || nargs > 2 || STREAM_T == NULL ||
        !IS_STREAM(args[0]))
        return slow(m, args, nargsf, kwnames);
    if (nargs == 2) {
        if (!PyLong_CheckExact(args[1]))
            return slow(m, args, nargsf, kwnames);
        Py_ssize_t size = PyLong_AsSsize_t(args[1]);
        if (size <= 0) {
            PyErr_Clear();
            return slow(m, args, nargsf, kwnames);
        }
    }
    PyObject *read = new_read(args[0], nargs == 2 ? args[1] : NULL, m->func, 0);
    return as_coroutine(AWAITING_SOME, read);
}

/* aio Stream.receive_into(buffer): the coroutine; the read happens when it is awaited. */
static PyObject *
aio_receive_into(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2 || STREAM_T == NULL ||
        !IS_STREAM(args[0]))
        return slow(m, args, nargsf, kwnames);
    return as_coroutine(AWAITING_INTO, new_read(args[0], args[1], m->func, 1));
}

/* ---- the driver's step and the protocol's delivery --------------------------------------- */

/* HandlerDriver._step(value, None): resume the handler coroutine with value (bytes for a
 * driven read, None after a future). */
static PyObject *
step(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* value None: a resume after a future the handler awaited; unless it waits DRIVEN (a
     * cancelled driven read, which the Python method tells the protocol about). */
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 3 || args[2] != Py_None ||
        DRIVER_T == NULL || !IS_DRIVER(args[0]) ||
        (args[1] == Py_None && SLOT(args[0], o_waiting) == DRIVEN))
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0], *value = args[1];
    PyObject *state = SLOT(self, o_state);
    if (state == NULL || !PyLong_CheckExact(state))
        return slow(m, args, nargsf, kwnames);
    if (PyLong_AsLong(state) != 0)
        Py_RETURN_NONE; /* finished already */
    PyObject *loop = SLOT(self, o_loop), *ctx = SLOT(self, o_context), *coro = SLOT(self, o_coro);
    if (SLOT(self, o_must_cancel) != Py_False || loop == NULL || ctx == NULL || coro == NULL ||
        !PyContext_CheckExact(ctx))
        return slow(m, args, nargsf, kwnames);
    Py_INCREF(loop);
    Py_INCREF(ctx);
    Py_INCREF(coro);
    PyObject *pair[2] = {loop, self}, *result = NULL, *outcome = NULL;
    PyObject *r = PyObject_Vectorcall(ENTER_TASK, pair, 2, NULL);
    if (r == NULL) {
        Py_DECREF(loop);
        Py_DECREF(ctx);
        Py_DECREF(coro);
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError))
            return NULL;
        PyErr_Clear(); /* inside another task's step: the Python method goes round the loop */
        return slow(m, args, nargsf, kwnames);
    }
    Py_DECREF(r);
    slot_set(self, o_waiting, RUNNING);

    long end = 0; /* _PENDING; 1 _FINISHED; 2 _CANCELLED */
    int raised = 0, failed = 0;
    PySendResult status;
    if (PyContext_Enter(ctx) < 0) {
        status = PYGEN_ERROR;
    } else {
        status = PyIter_Send(coro, value, &result);
        if (PyContext_Exit(ctx) < 0) {
            Py_XDECREF(result);
            status = PYGEN_ERROR;
        }
    }
    Py_DECREF(ctx);
    Py_DECREF(coro);
    if (status == PYGEN_NEXT) {
        if (result == DRIVEN && SLOT(self, o_must_cancel) == Py_False) {
            slot_set(self, o_waiting, DRIVEN);
        } else {
            PyObject *s = PyObject_CallMethodOneArg(self, s_suspend, result);
            failed = s == NULL;
            Py_XDECREF(s);
        }
        Py_DECREF(result);
    } else if (status == PYGEN_RETURN) {
        end = 1;
        outcome = result;
    } else {
        outcome = take_exception();
        end = PyObject_TypeCheck(outcome, (PyTypeObject *)CANCELLED_ERROR) ? 2 : 1;
        raised = 1;
    }
    /* _leave_task, keeping any exception of ours across the call. */
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    if (failed)
        PyErr_Fetch(&et, &ev, &etb);
    r = PyObject_Vectorcall(LEAVE_TASK, pair, 2, NULL);
    Py_DECREF(loop);
    if (r == NULL || failed) {
        if (r == NULL) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
        } else {
            Py_DECREF(r);
            PyErr_Restore(et, ev, etb);
        }
        Py_XDECREF(outcome);
        return NULL;
    }
    Py_DECREF(r);
    if (end == 0)
        Py_RETURN_NONE;
    PyObject *k = PyLong_FromLong(end);
    if (k == NULL) {
        Py_DECREF(outcome);
        return NULL;
    }
    r = PyObject_CallMethodObjArgs(self, s_conclude, k, outcome, raised ? Py_True : Py_False,
                                   NULL);
    Py_DECREF(k);
    Py_DECREF(outcome);
    return r;
}

/* StreamProtocol.data_received(data) while a driven receive_some waits for at most len(data)
 * bytes: hand the bytes object itself to the handler and run it now. */
static PyObject *
data_received(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2 || PROTOCOL_T == NULL ||
        !PyBytes_CheckExact(args[1]) || !IS_PROTOCOL(args[0]))
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0], *data = args[1];
    PyObject *some = SLOT(self, o_some), *driver = SLOT(self, o_driver);
    if (SLOT(self, o_tls) != Py_None || SLOT(self, o_read_waiter) != DRIVEN || some == NULL ||
        !PyLong_CheckExact(some) || PyBytes_GET_SIZE(data) > PyLong_AsSsize_t(some) ||
        driver == NULL || !IS_DRIVER(driver))
        return slow(m, args, nargsf, kwnames);
    Py_INCREF(driver);
    slot_set(self, o_some, Py_None);
    slot_set(self, o_read_waiter, Py_None);
    PyObject *call[3] = {driver, data, Py_None};
    PyObject *own = _PyType_Lookup(Py_TYPE(driver), s_step); /* borrowed */
    PyObject *r;
    if (own != NULL && Py_IS_TYPE(own, &FastMethodType) && ((FastMethod *)own)->kind == K_STEP)
        r = step((FastMethod *)own, call, 3, NULL);
    else
        r = PyObject_VectorcallMethod(s_step, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(driver);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* ---- serve_udp on asyncio (socketkit/_async/udp_server.py) -------------------------------- */

/* The classes and their slots (configure_udp_aio). */
static PyTypeObject *CONV_T, *UPROTO_T, *PEER_T;
static PyTypeObject *seen_conv, *seen_uproto;
static Py_ssize_t o_c_read_waiter, o_c_driver, o_c_iterating, o_c_queue, o_c_closed,
    o_c_received, o_c_sent, o_c_limit, o_c_protocol, o_c_address, o_u_peers, o_u_by_activity,
    o_u_time, o_u_transport, o_u_writable, o_u_done, o_p_last, o_p_value;
static PyObject *s_move_to_end, *s_sendto;

#define IS_CONV(o) is_a((o), CONV_T, &seen_conv)
#define IS_UPROTO(o) is_a((o), UPROTO_T, &seen_uproto)

/* slot += 1, as the Python methods' ``+= 1`` (the callers checked that it is an int). */
static int
slot_increment(PyObject *obj, Py_ssize_t off)
{
    PyObject *old = SLOT(obj, off);
    if (old == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a counter is missing");
        return -1;
    }
    PyObject *one = PyLong_FromLong(1);
    PyObject *n = one == NULL ? NULL : PyNumber_Add(old, one);
    Py_XDECREF(one);
    if (n == NULL)
        return -1;
    SLOT(obj, off) = n;
    Py_DECREF(old);
    return 0;
}

#define IS_INT_SLOT(obj, off) (SLOT(obj, off) != NULL && PyLong_CheckExact(SLOT(obj, off)))

/* Resume `driver` (a HandlerDriver) with `value`, as data_received does. */
static PyObject *
drive(PyObject *driver, PyObject *value)
{
    PyObject *call[3] = {driver, value, Py_None};
    PyObject *own = _PyType_Lookup(Py_TYPE(driver), s_step); /* borrowed */
    if (own != NULL && Py_IS_TYPE(own, &FastMethodType) && ((FastMethod *)own)->kind == K_STEP)
        return step((FastMethod *)own, call, 3, NULL);
    return PyObject_VectorcallMethod(s_step, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* _Protocol.datagram_received(data, addr) from a known peer whose handler waits in
 * ``async for``/``receive`` (DRIVEN): touch the peer (its time, the end of the activity order)
 * and run the handler with the bytes. A new source, a queue, any other wait: the Python
 * method. */
static PyObject *
udp_datagram_received(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 3 || UPROTO_T == NULL ||
        DRIVER_T == NULL || !IS_UPROTO(args[0]))
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0], *data = args[1], *addr = args[2];
    PyObject *peers = SLOT(self, o_u_peers);
    if (peers == NULL || !PyDict_CheckExact(peers))
        return slow(m, args, nargsf, kwnames);
    PyObject *peer = PyDict_GetItemWithError(peers, addr); /* borrowed */
    if (peer == NULL) {
        if (PyErr_Occurred())
            return NULL; /* an unhashable address: as the Python method would raise */
        return slow(m, args, nargsf, kwnames);
    }
    if (!Py_IS_TYPE(peer, PEER_T))
        return slow(m, args, nargsf, kwnames);
    PyObject *conv = SLOT(peer, o_p_value);
    if (conv == NULL || !IS_CONV(conv) || SLOT(conv, o_c_read_waiter) != DRIVEN ||
        !IS_INT_SLOT(conv, o_c_received))
        return slow(m, args, nargsf, kwnames);
    PyObject *driver = SLOT(conv, o_c_driver);
    PyObject *clock = SLOT(self, o_u_time), *order = SLOT(self, o_u_by_activity);
    if (driver == NULL || !IS_DRIVER(driver) || clock == NULL || order == NULL)
        return slow(m, args, nargsf, kwnames);
    Py_INCREF(peer);
    Py_INCREF(conv);
    Py_INCREF(driver);
    Py_INCREF(clock);
    Py_INCREF(order);
    PyObject *r = NULL;
    PyObject *now = PyObject_CallNoArgs(clock);
    if (now == NULL)
        goto done;
    slot_set(peer, o_p_last, now);
    Py_DECREF(now);
    PyObject *pair[2] = {order, addr};
    PyObject *moved =
        PyObject_VectorcallMethod(s_move_to_end, pair, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (moved == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            goto done;
        PyErr_Clear(); /* expired: no longer in the activity order */
    }
    Py_XDECREF(moved);
    if (SLOT(conv, o_c_read_waiter) != DRIVEN || SLOT(conv, o_c_driver) != driver ||
        !IS_INT_SLOT(conv, o_c_received)) {
        /* Code run by the calls above changed the conversation: the Python method decides
         * (it touches the peer again, which changes nothing). */
        r = slow(m, args, nargsf, kwnames);
        goto done;
    }
    slot_set(conv, o_c_read_waiter, Py_None);
    if (slot_increment(conv, o_c_received) < 0)
        goto done;
    r = drive(driver, data);
    if (r != NULL) {
        Py_DECREF(r);
        r = Py_NewRef(Py_None);
    }
done:
    Py_DECREF(order);
    Py_DECREF(clock);
    Py_DECREF(driver);
    Py_DECREF(conv);
    Py_DECREF(peer);
    return r;
}

/* Conversation.send(data): a bytes object within the limit, the transport writable: sendto
 * now and return the finished future. */
static PyObject *
udp_send(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2 || CONV_T == NULL ||
        !IS_CONV(args[0]) || !PyBytes_CheckExact(args[1]))
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0], *data = args[1];
    PyObject *protocol = SLOT(self, o_c_protocol), *limit = SLOT(self, o_c_limit);
    if (protocol == NULL || !IS_UPROTO(protocol) || SLOT(protocol, o_u_writable) != Py_True ||
        limit == NULL || !PyLong_CheckExact(limit) || !IS_INT_SLOT(self, o_c_sent))
        return slow(m, args, nargsf, kwnames);
    Py_ssize_t max = PyLong_AsSsize_t(limit);
    PyObject *transport = SLOT(protocol, o_u_transport), *address = SLOT(self, o_c_address);
    PyObject *done = SLOT(protocol, o_u_done);
    if ((max == -1 && PyErr_Occurred()) || PyBytes_GET_SIZE(data) > max || transport == NULL ||
        address == NULL || done == NULL) {
        PyErr_Clear();
        return slow(m, args, nargsf, kwnames);
    }
    Py_INCREF(transport);
    Py_INCREF(address);
    Py_INCREF(done); /* what is returned, taken before sendto can run any Python code */
    PyObject *call[3] = {transport, data, address};
    PyObject *r =
        PyObject_VectorcallMethod(s_sendto, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(transport);
    Py_DECREF(address);
    if (r == NULL || slot_increment(self, o_c_sent) < 0) {
        Py_XDECREF(r);
        Py_DECREF(done);
        return NULL;
    }
    Py_DECREF(r);
    return done;
}

/* Conversation.__anext__(): the handler itself waits with nothing queued: mark the wait
 * DRIVEN and return the awaitable that yields it. */
static PyObject *
udp_anext(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1 || CONV_T == NULL ||
        DRIVER_T == NULL || !IS_CONV(args[0]))
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    PyObject *queue = SLOT(self, o_c_queue), *driver = SLOT(self, o_c_driver);
    if (queue == NULL || SLOT(self, o_c_closed) != Py_False || driver == NULL ||
        !IS_DRIVER(driver) || SLOT(driver, o_waiting) != RUNNING ||
        SLOT(self, o_c_read_waiter) != Py_None)
        return slow(m, args, nargsf, kwnames);
    Py_ssize_t queued = PyObject_Length(queue);
    if (queued != 0) {
        PyErr_Clear();
        return slow(m, args, nargsf, kwnames);
    }
    DrivenRead *r = PyObject_GC_New(DrivenRead, &DrivenReadType);
    if (r == NULL)
        return NULL;
    r->stream = NULL;
    r->arg = NULL;
    r->func = NULL;
    r->inner = NULL;
    r->into = 0;
    r->plain = 1;
    r->yielded = 0;
    PyObject_GC_Track(r);
    slot_set(self, o_c_read_waiter, DRIVEN);
    slot_set(self, o_c_iterating, Py_True);
    return (PyObject *)r;
}

static PyObject *sync_dgram_receive(FastMethod *m, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames);
static PyObject *sync_dgram_send(FastMethod *m, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames);

static const vectorcallfunc KINDS[K_COUNT] = {
    [K_SYNC_RECEIVE_SOME] = (vectorcallfunc)sync_receive_some,
    [K_SYNC_SEND_ALL] = (vectorcallfunc)sync_send_all,
    [K_AIO_SEND_ALL] = (vectorcallfunc)aio_send_all,
    [K_AIO_RECEIVE_SOME] = (vectorcallfunc)aio_receive_some,
    [K_AIO_RECEIVE_INTO] = (vectorcallfunc)aio_receive_into,
    [K_DATA_RECEIVED] = (vectorcallfunc)data_received,
    [K_STEP] = (vectorcallfunc)step,
    [K_SYNC_DGRAM_RECEIVE] = (vectorcallfunc)sync_dgram_receive,
    [K_SYNC_DGRAM_SEND] = (vectorcallfunc)sync_dgram_send,
    [K_UDP_DATAGRAM_RECEIVED] = (vectorcallfunc)udp_datagram_received,
    [K_UDP_SEND] = (vectorcallfunc)udp_send,
    [K_UDP_ANEXT] = (vectorcallfunc)udp_anext,
};

static PyObject *
fm_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastMethod *m = (FastMethod *)callable;
    return KINDS[m->kind](callable, args, nargsf, kwnames);
}

static PyObject *
fm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int kind;
    PyObject *func;
    static char *names[] = {"kind", "func", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO:FastMethod", names, &kind, &func))
        return NULL;
    if (kind < 0 || kind >= K_COUNT) {
        PyErr_Format(PyExc_ValueError, "unknown fast path %d", kind);
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "func must be callable");
        return NULL;
    }
    FastMethod *m = (FastMethod *)type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    m->kind = kind;
    m->func = Py_NewRef(func);
    m->vectorcall = fm_vectorcall;
    return (PyObject *)m;
}

static void
fm_dealloc(FastMethod *m)
{
    PyObject_GC_UnTrack(m);
    Py_CLEAR(m->func);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static int
fm_traverse(FastMethod *m, visitproc visit, void *arg)
{
    Py_VISIT(m->func);
    return 0;
}

static PyObject *
fm_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *
fm_get_attr(FastMethod *m, void *name)
{
    return PyObject_GetAttrString(m->func, (const char *)name);
}

static PyObject *
fm_wrapped(FastMethod *m, void *unused)
{
    return Py_NewRef(m->func);
}

static PyGetSetDef fm_getset[] = {
    {"__wrapped__", (getter)fm_wrapped, NULL, "the Python method (every other call)", NULL},
    {"__doc__", (getter)fm_get_attr, NULL, NULL, "__doc__"},
    {"__name__", (getter)fm_get_attr, NULL, NULL, "__name__"},
    {"__qualname__", (getter)fm_get_attr, NULL, NULL, "__qualname__"},
    {"__module__", (getter)fm_get_attr, NULL, NULL, "__module__"},
    {NULL},
};

static PyObject *
fm_repr(FastMethod *m)
{
    return PyUnicode_FromFormat("<fast path of %R>", m->func);
}

static PyTypeObject FastMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "socketkit._speedups.FastMethod",
    .tp_basicsize = sizeof(FastMethod),
    .tp_dealloc = (destructor)fm_dealloc,
    .tp_vectorcall_offset = offsetof(FastMethod, vectorcall),
    .tp_repr = (reprfunc)fm_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "FastMethod(kind, func): func, with its common case done in C.",
    .tp_traverse = (traverseproc)fm_traverse,
    .tp_getset = fm_getset,
    .tp_descr_get = fm_descr_get,
    .tp_new = fm_new,
};

/* ---- batched datagrams (socketkit/_udp_batch.py) ----------------------------------------- */

/* send_many / receive_many with sendmmsg(2) / recvmmsg(2): the same plan as the Python code
 * in _udp_batch.py (which stays the definition, and the fallback), without the interpreter
 * per datagram. GSO runs go as one message with a UDP_SEGMENT control message and one iovec
 * per datagram, straight from the callers' buffers; received GRO buffers are split back. A
 * case this code does not take (a host name to resolve, an unusual buffer or address) makes
 * udp_send_many return None, and the Python code does it. */
#define UDP_BATCH 64                 /* messages per call (BATCH in _udp_batch.py) */
#define UDP_MAX_IOV 1024             /* datagrams per sendmmsg call (UIO_MAXIOV) */
#define UDP_MAX_SEGMENTS_ 64         /* UDP_MAX_SEGMENTS in include/linux/udp.h */
#define UDP_MAX_GSO_BYTES 65507      /* the largest IPv4 UDP payload */
#define UDP_GRO_BUFFER 65536         /* receive slot while GRO is on */
#define UDP_GRO_SLOTS 4              /* GRO_SLOTS in _udp_batch.py: runs read per call */
#define UDP_RECEIVE_SCRATCH (8 << 20) /* at most this many bytes of receive slots */
#define SOL_UDP_ 17
#define UDP_SEGMENT_ 103
#define UDP_GRO_ 104
#define SO_RXQ_OVFL_ 40
#define UDP_NAME 128 /* sizeof(struct sockaddr_storage) */
#define UDP_CONTROL 64

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

typedef struct {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_MAX_IOV];
    Py_buffer views[UDP_MAX_IOV];
    int segments[UDP_BATCH];
    char names[UDP_BATCH][UDP_NAME];
    char control[UDP_BATCH][UDP_CONTROL];
    char *buf; /* receive slots */
    size_t cap;
} UdpScratch;

static pthread_key_t udp_key; /* the thread's UdpScratch, freed when the thread ends */

static void
udp_scratch_free(void *p)
{
    UdpScratch *sc = p;
    free(sc->buf);
    free(sc);
}

static UdpScratch *
udp_scratch(void)
{
    UdpScratch *sc = pthread_getspecific(udp_key);
    if (sc == NULL) {
        sc = calloc(1, sizeof(UdpScratch));
        if (sc == NULL || pthread_setspecific(udp_key, sc) != 0) {
            free(sc);
            PyErr_NoMemory();
            return NULL;
        }
    }
    return sc;
}

/* Datagram (socketkit/_udp.py) and where its slots live; configure_udp. */
static PyTypeObject *DATAGRAM_T;
static Py_ssize_t o_dg_data, o_dg_address, o_dg_truncated, o_dg_dropped;
static PyObject *DECODE_ADDRESS; /* _udp_batch._decode_address, for the rare families */
static PyObject *s_enabled, *s_total, *s_max_size, *s_drops, *s_drops_known, *s_closed_,
    *s_remote_;

/* `dest` as a kernel sockaddr in `out`: its length, 0 when only Python can say (a name to
 * resolve, a scoped IPv6 name, a bad value: sendto resolves or raises). -1 with an error. */
static int
udp_encode(int family, PyObject *dest, char *out)
{
    memset(out, 0, UDP_NAME);
    if (family == AF_INET || family == AF_INET6) {
        Py_ssize_t n = PyTuple_Check(dest) ? PyTuple_GET_SIZE(dest) : 0;
        if (n < 2 || n > (family == AF_INET ? 2 : 4) || !PyUnicode_Check(PyTuple_GET_ITEM(dest, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(dest, 1)))
            return 0;
        const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(dest, 0));
        if (host == NULL) {
            PyErr_Clear();
            return 0;
        }
        long port = PyLong_AsLong(PyTuple_GET_ITEM(dest, 1));
        if (port < 0 || port > 65535) {
            PyErr_Clear();
            return 0;
        }
        if (family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)out;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)port);
            return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? (int)sizeof(*a) : 0;
        }
        unsigned long flow = 0, scope = 0;
        if (n > 2) {
            if (!PyLong_Check(PyTuple_GET_ITEM(dest, 2)))
                return 0;
            flow = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(dest, 2));
        }
        if (n > 3) {
            if (!PyLong_Check(PyTuple_GET_ITEM(dest, 3)))
                return 0;
            scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(dest, 3));
        }
        if (PyErr_Occurred() || flow > 0xfffff || scope > 0xffffffffUL) {
            PyErr_Clear();
            return 0;
        }
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_flowinfo = htonl((uint32_t)flow);
        a->sin6_scope_id = (uint32_t)scope;
        return inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? (int)sizeof(*a) : 0;
    }
    if (family == AF_UNIX) {
        PyObject *raw = NULL;
        if (PyUnicode_Check(dest)) {
            if ((raw = PyUnicode_EncodeFSDefault(dest)) == NULL) {
                PyErr_Clear();
                return 0;
            }
        } else if (PyBytes_Check(dest)) {
            raw = Py_NewRef(dest);
        } else {
            return 0;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(raw);
        const char *path = PyBytes_AS_STRING(raw);
        struct sockaddr_un *a = (struct sockaddr_un *)out;
        int abstract = len > 0 && path[0] == 0;
        int result = 0;
        if (len > 0 && (size_t)len + !abstract <= sizeof(a->sun_path)) {
            a->sun_family = AF_UNIX;
            memcpy(a->sun_path, path, (size_t)len);
            result = (int)(offsetof(struct sockaddr_un, sun_path) + (size_t)len + !abstract);
        }
        Py_DECREF(raw);
        return result;
    }
    return 0;
}

/* An int argument (PyLong_AsInt is 3.13+). */
static int
udp_as_int(PyObject *v)
{
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < INT_MIN || x > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "int out of range");
        return -1;
    }
    return (int)x;
}

static void
udp_release(UdpScratch *sc, int views)
{
    for (int i = 0; i < views; i++)
        PyBuffer_Release(&sc->views[i]);
}

/* udp_send_many(fd, family, items, to, gso_limit) -> int datagrams sent, or None (Python's
 * turn). GSO runs are made of segments shorter than gso_limit (0: no GSO). */
static PyObject *
udp_send_many(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "udp_send_many(fd, family, items, to, gso_limit)");
        return NULL;
    }
    int fd = udp_as_int(args[0]);
    int family = udp_as_int(args[1]);
    if ((fd == -1 || family == -1) && PyErr_Occurred())
        return NULL;
    PyObject *items = args[2], *to = args[3];
    Py_ssize_t gso_limit = PyLong_AsSsize_t(args[4]);
    if (gso_limit == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(items) && !PyTuple_CheckExact(items))
        Py_RETURN_NONE;
    UdpScratch *sc = udp_scratch();
    if (sc == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    PyObject **item_v = PySequence_Fast_ITEMS(items);
    int m = -1, v = 0;        /* current message, views taken */
    PyObject *run_to = NULL;  /* borrowed: the current message's destination */
    Py_ssize_t size = 0, total = 0;
    int closed = 1;
    PyObject *last_dest = NULL; /* borrowed: the last encoded destination */
    int last_len = 0, last_m = -1;
    for (Py_ssize_t i = 0; i < count && v < UDP_MAX_IOV; i++) {
        PyObject *item = item_v[i], *data = item, *dest = to;
        if (PyTuple_CheckExact(item)) {
            if (PyTuple_GET_SIZE(item) != 2)
                goto python;
            data = PyTuple_GET_ITEM(item, 0);
            dest = PyTuple_GET_ITEM(item, 1);
        }
        if (PyObject_GetBuffer(data, &sc->views[v], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            goto python;
        }
        Py_ssize_t len = sc->views[v].len;
        int same = 0;
        if (!closed && len > 0 && len <= size && size < gso_limit &&
            total + len <= UDP_MAX_GSO_BYTES &&
            sc->segments[m] < UDP_MAX_SEGMENTS_) {
            if (dest == run_to)
                same = 1;
            else if (dest != Py_None && run_to != Py_None) {
                same = PyObject_RichCompareBool(dest, run_to, Py_EQ);
                if (same < 0) {
                    PyErr_Clear();
                    same = 0;
                }
            }
        }
        if (same) {
            sc->iov[v].iov_base = sc->views[v].buf;
            sc->iov[v].iov_len = (size_t)len;
            v++;
            sc->segments[m]++;
            sc->msgs[m].msg_hdr.msg_iovlen++;
            total += len;
            closed = len < size;
            continue;
        }
        if (m + 1 == UDP_BATCH) {
            PyBuffer_Release(&sc->views[v]);
            break;
        }
        m++;
        struct msghdr *h = &sc->msgs[m].msg_hdr;
        memset(h, 0, sizeof(*h));
        if (dest != Py_None) {
            int n;
            if (dest == last_dest) {
                memcpy(sc->names[m], sc->names[last_m], (size_t)last_len);
                n = last_len;
            } else {
                n = udp_encode(family, dest, sc->names[m]);
                if (n <= 0) {
                    v++;
                    goto python;
                }
                last_dest = dest;
                last_len = n;
            }
            last_m = m;
            h->msg_name = sc->names[m];
            h->msg_namelen = (socklen_t)n;
        }
        h->msg_iov = &sc->iov[v];
        h->msg_iovlen = 1;
        sc->iov[v].iov_base = sc->views[v].buf;
        sc->iov[v].iov_len = (size_t)len;
        v++;
        sc->segments[m] = 1;
        run_to = dest;
        size = total = len;
        closed = len == 0;
    }
    int messages = m + 1;
    for (int i = 0; i < messages; i++) {
        struct msghdr *h = &sc->msgs[i].msg_hdr;
        if (sc->segments[i] > 1) {
            memset(sc->control[i], 0, UDP_CONTROL);
            h->msg_control = sc->control[i];
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP_;
            c->cmsg_type = UDP_SEGMENT_;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)h->msg_iov[0].iov_len;
            memcpy(CMSG_DATA(c), &segment, sizeof(segment));
        }
    }
    int n, err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = sendmmsg(fd, sc->msgs, (unsigned int)messages, MSG_DONTWAIT);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            udp_release(sc, v);
            return NULL;
        }
    }
    udp_release(sc, v);
    if (n < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long sent = 0;
    for (int i = 0; i < n; i++)
        sent += sc->segments[i];
    return PyLong_FromLong(sent);
python:
    udp_release(sc, v);
    Py_RETURN_NONE;
}

/* A received sockaddr as the socket module gives it (recvfrom). */
static PyObject *
udp_decode(const char *raw, socklen_t len)
{
    if (len == 0)
        Py_RETURN_NONE;
    sa_family_t family = ((const struct sockaddr *)raw)->sa_family;
    char host[INET6_ADDRSTRLEN];
    if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)raw;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        /* The scope stays in scope_id only, as recvfrom gives it (no "%eth0" in the host). */
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)raw;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    if (family == AF_UNIX && len >= offsetof(struct sockaddr_un, sun_path)) {
        const struct sockaddr_un *a = (const struct sockaddr_un *)raw;
        size_t path = len - offsetof(struct sockaddr_un, sun_path);
        if (path > 0 && a->sun_path[0] == 0)
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)path);
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, path));
    }
    /* Another family: Python's decoder. */
    return PyObject_CallFunction(DECODE_ADDRESS, "y#", raw, (Py_ssize_t)len);
}

static PyObject *
udp_datagram(PyObject *data, PyObject *address, int truncated, PyObject *dropped)
{
    PyObject *d = DATAGRAM_T->tp_alloc(DATAGRAM_T, 0);
    if (d == NULL)
        return NULL;
    *(PyObject **)((char *)d + o_dg_data) = Py_NewRef(data);
    *(PyObject **)((char *)d + o_dg_address) = Py_NewRef(address);
    *(PyObject **)((char *)d + o_dg_truncated) = Py_NewRef(truncated ? Py_True : Py_False);
    *(PyObject **)((char *)d + o_dg_dropped) = Py_NewRef(dropped);
    return d;
}

/* Append a datagram of `len` bytes at `p` (cut to max_size) to `out`. */
static int
udp_append(PyObject *out, const char *p, Py_ssize_t len, Py_ssize_t max_size, int truncated,
           PyObject *address, PyObject *dropped)
{
    if (len > max_size) {
        len = max_size;
        truncated = 1;
    }
    PyObject *data = PyBytes_FromStringAndSize(p, len);
    if (data == NULL)
        return -1;
    PyObject *d = udp_datagram(data, address, truncated, dropped);
    Py_DECREF(data);
    if (d == NULL)
        return -1;
    int r = PyList_Append(out, d);
    Py_DECREF(d);
    return r;
}

/* udp_receive_many(fd, max_count, max_size, gro, drops) -> (datagrams, gro_seen). */
static PyObject *
udp_receive_many(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "udp_receive_many(fd, max_count, max_size, gro, drops)");
        return NULL;
    }
    if (DATAGRAM_T == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_udp was not called");
        return NULL;
    }
    int fd = udp_as_int(args[0]);
    Py_ssize_t max_count = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[2]);
    if ((fd == -1 || max_count == -1 || max_size == -1) && PyErr_Occurred())
        return NULL;
    int gro = PyObject_IsTrue(args[3]);
    if (gro < 0)
        return NULL;
    PyObject *drops = args[4];
    int counting = 0;
    unsigned long total = 0;
    if (drops != Py_None) {
        PyObject *e = PyObject_GetAttr(drops, s_enabled);
        if (e == NULL)
            return NULL;
        counting = PyObject_IsTrue(e);
        Py_DECREF(e);
        if (counting < 0)
            return NULL;
        if (counting) {
            PyObject *t = PyObject_GetAttr(drops, s_total);
            if (t == NULL)
                return NULL;
            total = PyLong_AsUnsignedLong(t);
            Py_DECREF(t);
            if (PyErr_Occurred())
                return NULL;
        }
    }
    UdpScratch *sc = udp_scratch();
    if (sc == NULL)
        return NULL;
    size_t slot = (size_t)(max_size > 0 ? max_size : 1);
    if (gro && slot < UDP_GRO_BUFFER)
        slot = UDP_GRO_BUFFER;
    size_t count = max_count < UDP_BATCH ? (size_t)(max_count > 0 ? max_count : 1) : UDP_BATCH;
    if (gro && count > UDP_GRO_SLOTS)
        count = UDP_GRO_SLOTS;
    if (count * slot > UDP_RECEIVE_SCRATCH)
        count = slot >= UDP_RECEIVE_SCRATCH ? 1 : UDP_RECEIVE_SCRATCH / slot;
    if (sc->cap < count * slot) {
        char *buf = realloc(sc->buf, count * slot);
        if (buf == NULL)
            return PyErr_NoMemory();
        sc->buf = buf;
        sc->cap = count * slot;
    }
    for (size_t i = 0; i < count; i++) {
        struct msghdr *h = &sc->msgs[i].msg_hdr;
        sc->iov[i].iov_base = sc->buf + i * slot;
        sc->iov[i].iov_len = slot;
        h->msg_name = sc->names[i];
        h->msg_namelen = UDP_NAME;
        h->msg_iov = &sc->iov[i];
        h->msg_iovlen = 1;
        h->msg_control = sc->control[i];
        h->msg_controllen = UDP_CONTROL;
        h->msg_flags = 0;
    }
    int n, err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = recvmmsg(fd, sc->msgs, (unsigned int)count, MSG_DONTWAIT, NULL);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    if (n < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    PyObject *address = NULL, *zero = NULL;
    int gro_seen = 0, prev = -1;
    unsigned long start_total = total;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &sc->msgs[i].msg_hdr;
        const char *p = sc->buf + (size_t)i * slot;
        Py_ssize_t len = (Py_ssize_t)sc->msgs[i].msg_len;
        int segment = 0, have_count = 0;
        uint32_t overflow = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level == SOL_UDP_ && c->cmsg_type == UDP_GRO_ &&
                c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                memcpy(&segment, CMSG_DATA(c), sizeof(int));
            } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL_ &&
                       c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
                memcpy(&overflow, CMSG_DATA(c), sizeof(uint32_t));
                have_count = 1;
            }
        }
        if (prev < 0 || sc->msgs[prev].msg_hdr.msg_namelen != h->msg_namelen ||
            memcmp(sc->names[prev], sc->names[i], h->msg_namelen) != 0) {
            Py_XDECREF(address);
            if ((address = udp_decode(sc->names[i], h->msg_namelen)) == NULL)
                goto fail;
        }
        prev = i;
        PyObject *dropped = Py_None;
        long drop_value = 0;
        if (counting) {
            if (have_count) {
                drop_value = (long)((overflow - (uint32_t)total) & 0xffffffffUL);
                total = overflow;
            }
            if ((dropped = PyLong_FromLong(drop_value)) == NULL)
                goto fail;
        } else {
            Py_INCREF(dropped);
        }
        int truncated = (h->msg_flags & MSG_TRUNC) != 0;
        int r;
        if (segment > 0 && segment < len) {
            gro_seen = 1;
            if (zero == NULL && counting && (zero = PyLong_FromLong(0)) == NULL) {
                Py_DECREF(dropped);
                goto fail;
            }
            r = 0;
            for (Py_ssize_t off = 0; off < len && r == 0; off += segment) {
                Py_ssize_t part = len - off < segment ? len - off : segment;
                int last = off + segment >= len;
                r = udp_append(out, p + off, part, max_size, last && truncated, address,
                               off == 0 ? dropped : (counting ? zero : Py_None));
            }
        } else {
            if (segment > 0)
                gro_seen = 1;
            r = udp_append(out, p, len, max_size, truncated, address, dropped);
        }
        Py_DECREF(dropped);
        if (r < 0)
            goto fail;
    }
    Py_XDECREF(address);
    Py_XDECREF(zero);
    if (counting && total != start_total) {
        PyObject *t = PyLong_FromUnsignedLong(total);
        if (t == NULL || PyObject_SetAttr(drops, s_total, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    PyObject *result = PyTuple_Pack(2, out, gro_seen ? Py_True : Py_False);
    Py_DECREF(out);
    return result;
fail:
    Py_XDECREF(address);
    Py_XDECREF(zero);
    Py_DECREF(out);
    return NULL;
}

/* dropped_before for a datagram received on `self` with control data `h` (DatagramSocket's
 * _drops / _drops_known, as DropCounter.update): a new reference, NULL with an error. */
static PyObject *
dgram_dropped(PyObject *self, struct msghdr *h)
{
    int known = attr_is(self, s_drops_known, Py_True);
    if (known < 0)
        return NULL;
    if (!known) /* a Unix datagram socket: nothing is dropped on receive */
        return PyLong_FromLong(0);
    PyObject *counter = PyObject_GetAttr(self, s_drops);
    if (counter == NULL)
        return NULL;
    PyObject *result = NULL;
    int enabled = attr_is(counter, s_enabled, Py_True);
    if (enabled < 0)
        goto done;
    if (!enabled) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    long dropped = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL_ ||
            c->cmsg_len < CMSG_LEN(sizeof(uint32_t)))
            continue;
        uint32_t count;
        memcpy(&count, CMSG_DATA(c), sizeof(count));
        PyObject *t = PyObject_GetAttr(counter, s_total);
        if (t == NULL)
            goto done;
        unsigned long total = PyLong_AsUnsignedLong(t);
        Py_DECREF(t);
        if (total == (unsigned long)-1 && PyErr_Occurred())
            goto done;
        if (count != (uint32_t)total) {
            dropped = (long)((count - (uint32_t)total) & 0xffffffffUL);
            PyObject *n = PyLong_FromUnsignedLong(count);
            if (n == NULL || PyObject_SetAttr(counter, s_total, n) < 0) {
                Py_XDECREF(n);
                goto done;
            }
            Py_DECREF(n);
        }
        break;
    }
    result = PyLong_FromLong(dropped);
done:
    Py_DECREF(counter);
    return result;
}

/* sync DatagramSocket.receive() while the socket is direct (open, no default timeout): one
 * recvmsg(2) with the GIL released, then the Datagram built here, as the Python method's own
 * direct branch does. Small datagrams land in the thread's scratch buffer (as receive_some). */
static PyObject *
sync_dgram_receive(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1 || DATAGRAM_T == NULL)
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    int fd = direct_fd(self);
    if (fd < 0)
        return fd == -2 ? NULL : slow(m, args, nargsf, kwnames);
    PyObject *v = PyObject_GetAttr(self, s_max_size);
    if (v == NULL)
        return NULL;
    Py_ssize_t max_size = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if (max_size < 1) {
        if (PyErr_Occurred())
            return NULL;
        return slow(m, args, nargsf, kwnames);
    }
    Scratch *sc = max_size <= SCRATCH_SIZE ? thread_scratch() : NULL;
    PyObject *data = NULL;
    char *into;
    if (sc != NULL && sc->last <= SMALL_READ) {
        into = sc->buf;
    } else {
        sc = NULL;
        data = PyBytes_FromStringAndSize(NULL, max_size);
        if (data == NULL)
            return NULL;
        into = PyBytes_AS_STRING(data);
    }
    struct sockaddr_storage name;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint32_t)) + 64];
    } control;
    struct iovec iov = {into, (size_t)max_size};
    struct msghdr h;
    ssize_t n;
    int err;
    for (;;) {
        memset(&h, 0, sizeof(h));
        h.msg_name = &name;
        h.msg_namelen = sizeof(name);
        h.msg_iov = &iov;
        h.msg_iovlen = 1;
        h.msg_control = control.buf;
        h.msg_controllen = sizeof(control.buf);
        Py_BEGIN_ALLOW_THREADS
        n = recvmsg(fd, &h, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0)
            break;
        int retry = again(&err, fd, POLLIN);
        if (retry > 0)
            continue;
        Py_XDECREF(data);
        if (retry < 0)
            return NULL;
        return raise_translated(self, err, s_receive);
    }
    Scratch *mine = pthread_getspecific(scratch_key);
    if (mine != NULL)
        mine->last = n;
    if (n == 0) {
        /* close() shuts the socket down to wake a blocked receive: then the Python method
         * says so; an empty datagram of a peer is returned as usual. */
        int closed = attr_is(self, s_closed_, Py_True);
        if (closed != 0) {
            Py_XDECREF(data);
            return closed < 0 ? NULL : slow(m, args, nargsf, kwnames);
        }
    }
    if (data == NULL) {
        if ((data = PyBytes_FromStringAndSize(sc->buf, n)) == NULL)
            return NULL;
    } else if (n != max_size && _PyBytes_Resize(&data, n) < 0) {
        return NULL;
    }
    PyObject *address = udp_decode((const char *)&name, h.msg_namelen);
    if (address == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    PyObject *dropped = dgram_dropped(self, &h);
    PyObject *result = NULL;
    if (dropped != NULL) {
        result = udp_datagram(data, address, (h.msg_flags & MSG_TRUNC) != 0, dropped);
        Py_DECREF(dropped);
    }
    Py_DECREF(address);
    Py_DECREF(data);
    return result;
}

/* sync DatagramSocket.send(data) on a connected socket while it is direct: one send(2),
 * first offered with MSG_DONTWAIT while the GIL is held (as send_all), then with the GIL
 * released when the send buffer is full. Errors go to self._error(exc, "send", size), which
 * needs the size for DatagramTooLarge. */
static PyObject *
sync_dgram_send(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 2)
        return slow(m, args, nargsf, kwnames);
    PyObject *self = args[0];
    int fd = direct_fd(self);
    if (fd < 0)
        return fd == -2 ? NULL : slow(m, args, nargsf, kwnames);
    int unconnected = attr_is(self, s_remote_, Py_None);
    if (unconnected != 0)
        return unconnected < 0 ? NULL : slow(m, args, nargsf, kwnames);
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* not a contiguous byte buffer: the Python method says what is wrong */
        return slow(m, args, nargsf, kwnames);
    }
    ssize_t n = -1;
    int err = EAGAIN;
    if (view.len <= HELD_SEND_MAX) {
        for (;;) {
            n = send(fd, view.buf, (size_t)view.len, MSG_DONTWAIT | MSG_NOSIGNAL);
            err = errno;
            if (n >= 0 || err != EINTR)
                break;
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
    }
    while (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) {
        if (err == EINTR && PyErr_CheckSignals() < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        n = send(fd, view.buf, (size_t)view.len, MSG_NOSIGNAL);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
            int retry = again(&err, fd, POLLOUT); /* non-blocking behind our back: wait */
            if (retry < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
            if (retry > 0)
                err = EAGAIN;
        }
    }
    Py_ssize_t size = view.len;
    PyBuffer_Release(&view);
    if (n >= 0)
        return PyLong_FromSsize_t(n);
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *value = take_exception();
    PyObject *mapped = PyObject_CallMethod(self, "_error", "OOn", value, s_send, size);
    if (mapped == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    Py_INCREF(value);
    PyException_SetContext(mapped, value);
    PyException_SetCause(mapped, value); /* steals; also sets __suppress_context__ */
    PyErr_SetObject((PyObject *)Py_TYPE(mapped), mapped);
    Py_DECREF(mapped);
    return NULL;
}

static Py_ssize_t slot_offset(PyTypeObject *type, const char *name);

/* configure_udp(datagram_type, decode_address) */
static PyObject *
configure_udp(PyObject *module, PyObject *args)
{
    PyTypeObject *type;
    PyObject *decode;
    if (!PyArg_ParseTuple(args, "O!O:configure_udp", &PyType_Type, &type, &decode))
        return NULL;
    Py_ssize_t offs[4];
    const char *names[4] = {"data", "address", "truncated", "dropped_before"};
    for (int i = 0; i < 4; i++) {
        if ((offs[i] = slot_offset(type, names[i])) < 0)
            return NULL;
    }
    o_dg_data = offs[0];
    o_dg_address = offs[1];
    o_dg_truncated = offs[2];
    o_dg_dropped = offs[3];
    Py_XSETREF(DATAGRAM_T, (PyTypeObject *)Py_NewRef(type));
    Py_XSETREF(DECODE_ADDRESS, Py_NewRef(decode));
    Py_RETURN_NONE;
}

/* ---- module ------------------------------------------------------------------------------ */

/* The offset of slot `name` in instances of `type` (a __slots__ member), or -1. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL)
        return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)d)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            off = member->offset;
    }
    Py_DECREF(d);
    if (off < 0)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable __slots__ member", type->tp_name,
                     name);
    return off;
}

static PyObject *
configure_aio(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"stream",  "protocol", "driver",     "driven",     "running",
                            "no_data", "done",     "unset",      "enter_task", "leave_task",
                            "cancelled_error", "awaiting_some", "awaiting_into", NULL};
    PyTypeObject *stream, *protocol, *driver;
    PyObject *v[10];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!OOOOOOOOOO:configure_aio", names,
                                     &PyType_Type, &stream, &PyType_Type, &protocol,
                                     &PyType_Type, &driver, &v[0], &v[1], &v[2], &v[3], &v[4],
                                     &v[5], &v[6], &v[7], &v[8], &v[9]))
        return NULL;
    if (!PyCallable_Check(v[3]) || !PyCallable_Check(v[8]) || !PyCallable_Check(v[9])) {
        PyErr_SetString(PyExc_TypeError, "done, awaiting_some and awaiting_into must be callable");
        return NULL;
    }
    if (!PyType_Check(v[7])) {
        PyErr_SetString(PyExc_TypeError, "cancelled_error must be a class");
        return NULL;
    }
    struct {
        Py_ssize_t *off;
        PyTypeObject *type;
        const char *name;
    } slots[] = {
        {&o_closed, stream, "_closed"},
        {&o_p, stream, "_p"},
        {&o_transport, stream, "_transport"},
        {&o_default_timeout, stream, "default_timeout"},
        {&o_buffer, protocol, "buffer"},
        {&o_driver, protocol, "driver"},
        {&o_eof, protocol, "eof"},
        {&o_error, protocol, "error"},
        {&o_read_waiter, protocol, "_read_waiter"},
        {&o_some, protocol, "_some"},
        {&o_reading_paused, protocol, "reading_paused"},
        {&o_tls, protocol, "tls"},
        {&o_write_paused, protocol, "write_paused"},
        {&o_state, driver, "_state"},
        {&o_must_cancel, driver, "_must_cancel"},
        {&o_loop, driver, "_loop"},
        {&o_context, driver, "_context"},
        {&o_coro, driver, "_coro"},
        {&o_waiting, driver, "_waiting"},
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        if ((*slots[i].off = slot_offset(slots[i].type, slots[i].name)) < 0)
            return NULL;
    }
    PyObject **objects[10] = {&DRIVEN,     &RUNNING,        &NO_DATA,    &DONE,
                              &AIO_UNSET,  &ENTER_TASK,     &LEAVE_TASK, &CANCELLED_ERROR,
                              &AWAITING_SOME, &AWAITING_INTO};
    for (int i = 0; i < 10; i++)
        Py_XSETREF(*objects[i], Py_NewRef(v[i]));
    Py_CLEAR(seen_stream);
    Py_CLEAR(seen_protocol);
    Py_CLEAR(seen_driver);
    Py_XSETREF(STREAM_T, (PyTypeObject *)Py_NewRef(stream));
    Py_XSETREF(PROTOCOL_T, (PyTypeObject *)Py_NewRef(protocol));
    Py_XSETREF(DRIVER_T, (PyTypeObject *)Py_NewRef(driver));
    Py_RETURN_NONE;
}


static PyObject *
configure_udp_aio(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"conversation", "protocol", "peer", NULL};
    PyTypeObject *conv, *protocol, *peer;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!:configure_udp_aio", names, &PyType_Type,
                                     &conv, &PyType_Type, &protocol, &PyType_Type, &peer))
        return NULL;
    struct {
        Py_ssize_t *off;
        PyTypeObject *type;
        const char *name;
    } slots[] = {
        {&o_c_read_waiter, conv, "_read_waiter"},
        {&o_c_driver, conv, "_driver"},
        {&o_c_iterating, conv, "_iterating"},
        {&o_c_queue, conv, "_queue"},
        {&o_c_closed, conv, "closed"},
        {&o_c_received, conv, "received"},
        {&o_c_sent, conv, "sent"},
        {&o_c_limit, conv, "_limit"},
        {&o_c_protocol, conv, "_protocol"},
        {&o_c_address, conv, "address"},
        {&o_u_peers, protocol, "_peers"},
        {&o_u_by_activity, protocol, "_by_activity"},
        {&o_u_time, protocol, "_time"},
        {&o_u_transport, protocol, "transport"},
        {&o_u_writable, protocol, "writable"},
        {&o_u_done, protocol, "done"},
        {&o_p_last, peer, "last"},
        {&o_p_value, peer, "value"},
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        if ((*slots[i].off = slot_offset(slots[i].type, slots[i].name)) < 0)
            return NULL;
    }
    Py_CLEAR(seen_conv);
    Py_CLEAR(seen_uproto);
    Py_XSETREF(CONV_T, (PyTypeObject *)Py_NewRef(conv));
    Py_XSETREF(UPROTO_T, (PyTypeObject *)Py_NewRef(protocol));
    Py_XSETREF(PEER_T, (PyTypeObject *)Py_NewRef(peer));
    Py_RETURN_NONE;
}

/* ---- TFTP lock-step (socketkit/tftp/_channel.py, _lockstep) ----------------------------------
 *
 * tftp_lockstep(fd, sending, buf, blksize, io, views, limit, state) -> int
 *
 * The steady state of a windowsize-1 transfer on a socket connected to the peer, with the
 * kernel's SO_RCVTIMEO as the retransmission timer: a receiver takes DATA block `block`,
 * ACKs it and gives its bytes to io(...) (the file's write: a memoryview of `buf` when
 * `views`, else bytes); a sender takes the ACK of block `block` (in flight), reads the next
 * block with io(blksize) and sends it. `state` is the list [block, size, stamp, chunk,
 * socket_failed] and is
 * brought up to date on every way out, exceptions included (the caller's `finally` hands it
 * back to the protocol machine): block = the next block expected (receiver) or the block in
 * flight (sender), size = bytes moved, stamp = time.monotonic() of the last ACK sent /
 * DATA sent, chunk = the data of the block in flight (sender; None until one was read here),
 * socket_failed = True when the OSError raised came from the socket (else from io).
 *
 * Returns n >= 0 when a datagram that is not the common case arrived (its n bytes are at the
 * start of buf: the Python path takes it), -1 when the receive timed out, -2 after `limit`
 * blocks (progress), -3 when the sender's last (short) block went out. Pending signals run
 * their Python handlers once per block and on EINTR; the loop goes on unless one raised. Socket errors raise OSError. The Python
 * loop it replaces is the definition; both are tested (tests/tftp/test_lockstep.py). */
static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
lockstep_store(PyObject *state, long block, long long size, double stamp, PyObject *chunk,
               int socket_failed)
{
    PyObject *b = PyLong_FromLong(block), *z = PyLong_FromLongLong(size),
             *t = PyFloat_FromDouble(stamp);
    if (b == NULL || z == NULL || t == NULL) {
        Py_XDECREF(b);
        Py_XDECREF(z);
        Py_XDECREF(t);
        return -1;
    }
    PyList_SetItem(state, 0, b);
    PyList_SetItem(state, 1, z);
    PyList_SetItem(state, 2, t);
    PyList_SetItem(state, 3, Py_NewRef(chunk));
    PyList_SetItem(state, 4, PyBool_FromLong(socket_failed));
    return 0;
}

static PyObject *
tftp_lockstep(PyObject *self, PyObject *args)
{
    int fd, sending, views;
    Py_buffer buf;
    Py_ssize_t blksize, limit;
    PyObject *io, *state;
    if (!PyArg_ParseTuple(args, "ipw*nOpnO!", &fd, &sending, &buf, &blksize, &io, &views,
                          &limit, &PyList_Type, &state))
        return NULL;
    PyObject *blksize_obj = NULL, *chunk = NULL;
    char *packet = NULL;
    long block = 0;
    long long size = 0;
    double stamp = 0.0;
    Py_ssize_t result = -1;
    int failed = 1, socket_failed = 0;
    if (PyList_GET_SIZE(state) != 5 || blksize < 8 || blksize > 65464 || buf.len < blksize + 4) {
        PyErr_SetString(PyExc_ValueError, "tftp_lockstep: bad state, blksize or buffer");
        goto done_early;
    }
    block = PyLong_AsLong(PyList_GET_ITEM(state, 0));
    size = PyLong_AsLongLong(PyList_GET_ITEM(state, 1));
    stamp = PyFloat_AsDouble(PyList_GET_ITEM(state, 2));
    chunk = Py_NewRef(PyList_GET_ITEM(state, 3));
    if (PyErr_Occurred())
        goto done_early;
    if (sending) {
        if ((blksize_obj = PyLong_FromSsize_t(blksize)) == NULL)
            goto done;
        if ((packet = PyMem_Malloc((size_t)blksize + 4)) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    unsigned char *b = buf.buf;
    Py_ssize_t want = sending ? 4 : blksize + 4;
    int kind = sending ? 4 : 3;
    for (Py_ssize_t count = 0;; count++) {
        if (count >= limit) {
            result = -2;
            break;
        }
        /* A signal that came between two system calls (none of them saw EINTR): its Python
         * handler runs now (Ctrl-C), not after the whole file. Only a flag is read when no
         * signal is pending. */
        if (PyErr_CheckSignals() < 0)
            goto done;
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = recv(fd, b, (size_t)buf.len, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto done;
                count--;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK) {
                result = -1;
                break;
            }
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            socket_failed = 1;
            goto done;
        }
        if (n != want || b[0] != 0 || b[1] != kind ||
            (((unsigned)b[2] << 8) | b[3]) != ((unsigned long)block & 0xFFFF)) {
            result = n;
            break;
        }
        if (!sending) {
            /* The ACK first, then the write: the peer's next block is on its way meanwhile
             * (tftp-hpa's client does the same). */
            unsigned char ack[4] = {0, 4, (unsigned char)((block >> 8) & 0xFF),
                                    (unsigned char)(block & 0xFF)};
            if (send(fd, ack, 4, 0) < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                socket_failed = 1;
                goto done;
            }
            stamp = monotonic_now();
            PyObject *arg = views ? PyMemoryView_FromMemory((char *)b + 4, blksize, PyBUF_READ)
                                  : PyBytes_FromStringAndSize((char *)b + 4, blksize);
            if (arg == NULL)
                goto done;
            PyObject *r = PyObject_CallOneArg(io, arg);
            Py_DECREF(arg);
            if (r == NULL)
                goto done;
            Py_DECREF(r);
            size += blksize;
            block++;
            continue;
        }
        block++;
        PyObject *got = PyObject_CallOneArg(io, blksize_obj);
        if (got == NULL)
            goto done;
        if (!PyBytes_Check(got) || PyBytes_GET_SIZE(got) > blksize) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "tftp_lockstep: read gave no bytes or too many");
            goto done;
        }
        Py_SETREF(chunk, got);
        Py_ssize_t len = PyBytes_GET_SIZE(chunk);
        packet[0] = 0;
        packet[1] = 3;
        packet[2] = (char)((block >> 8) & 0xFF);
        packet[3] = (char)(block & 0xFF);
        memcpy(packet + 4, PyBytes_AS_STRING(chunk), (size_t)len);
        ssize_t s;
        Py_BEGIN_ALLOW_THREADS
        s = send(fd, packet, (size_t)len + 4, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (s < 0) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            socket_failed = 1;
            goto done;
        }
        stamp = monotonic_now();
        size += len;
        if (len < blksize) {
            result = -3;
            break;
        }
    }
    failed = 0;
done:
    {
        PyObject *et = NULL, *ev = NULL, *etb = NULL;
        if (failed)
            PyErr_Fetch(&et, &ev, &etb);
        if (lockstep_store(state, block, size, stamp, chunk, socket_failed) < 0)
            failed = 1;
        if (et != NULL) {
            PyErr_Clear();
            PyErr_Restore(et, ev, etb);
        }
    }
done_early:
    Py_XDECREF(chunk);
    Py_XDECREF(blksize_obj);
    PyMem_Free(packet);
    PyBuffer_Release(&buf);
    if (failed)
        return NULL;
    return PyLong_FromSsize_t(result);
}

static PyMethodDef module_methods[] = {
    {"configure_aio", (PyCFunction)(void (*)(void))configure_aio, METH_VARARGS | METH_KEYWORDS,
     "The asyncio side's markers and helpers (socketkit/_async/stream.py)."},
    {"configure_udp_aio", (PyCFunction)(void (*)(void))configure_udp_aio,
     METH_VARARGS | METH_KEYWORDS,
     "serve_udp's classes on asyncio (socketkit/_async/udp_server.py)."},
    {"configure_udp", configure_udp, METH_VARARGS,
     "The Datagram class and the address decoder (socketkit/_udp_batch.py)."},
    {"udp_send_many", (PyCFunction)(void (*)(void))udp_send_many, METH_FASTCALL,
     "sendmmsg a batch of datagrams (socketkit/_udp_batch.py)."},
    {"udp_receive_many", (PyCFunction)(void (*)(void))udp_receive_many, METH_FASTCALL,
     "recvmmsg a batch of datagrams (socketkit/_udp_batch.py)."},
    {"tftp_lockstep", tftp_lockstep, METH_VARARGS,
     "A TFTP lock-step transfer's steady state (socketkit/tftp/_channel.py)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "socketkit._speedups",
    .m_doc = "C fast paths for socketkit's per-message hot path (see _speedups.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text)                                                                       \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                      \
        return NULL;

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_direct, "_direct");
    INTERN(s_sock, "_sock");
    INTERN(s_eof, "_eof");
    INTERN(s_error_m, "_error");
    INTERN(s_is_closing, "is_closing");
    INTERN(s_write, "write");
    INTERN(s_drain, "_drain");
    INTERN(s_step, "_step");
    INTERN(s_suspend, "_suspend");
    INTERN(s_conclude, "_conclude");
    INTERN(s_receive, "receive");
    INTERN(s_send, "send");
    INTERN(s_get_extra_info, "get_extra_info");
    INTERN(s_socket, "socket");
    INTERN(s_fileno, "fileno");
    INTERN(s_receive_into_waiting, "_receive_into_waiting");
    INTERN(s_read_failed, "_read_failed");
    INTERN(s_throw, "throw");
    INTERN(s_close, "close");
    INTERN(s_enabled, "enabled");
    INTERN(s_total, "total");
    INTERN(s_max_size, "_max_size");
    INTERN(s_drops, "_drops");
    INTERN(s_drops_known, "_drops_known");
    INTERN(s_closed_, "_closed");
    INTERN(s_remote_, "_remote");
    INTERN(s_move_to_end, "move_to_end");
    INTERN(s_sendto, "sendto");
    if (PyType_Ready(&FastMethodType) < 0 || PyType_Ready(&DrivenReadType) < 0)
        return NULL;
    if (pthread_key_create(&scratch_key, free) != 0 ||
        pthread_key_create(&udp_key, udp_scratch_free) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_key_create failed");
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "FastMethod", (PyObject *)&FastMethodType) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_RECEIVE_SOME", K_SYNC_RECEIVE_SOME) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_SEND_ALL", K_SYNC_SEND_ALL) < 0 ||
        PyModule_AddIntConstant(module, "AIO_SEND_ALL", K_AIO_SEND_ALL) < 0 ||
        PyModule_AddIntConstant(module, "AIO_RECEIVE_SOME", K_AIO_RECEIVE_SOME) < 0 ||
        PyModule_AddIntConstant(module, "AIO_RECEIVE_INTO", K_AIO_RECEIVE_INTO) < 0 ||
        PyModule_AddIntConstant(module, "DATA_RECEIVED", K_DATA_RECEIVED) < 0 ||
        PyModule_AddIntConstant(module, "STEP", K_STEP) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_DGRAM_RECEIVE", K_SYNC_DGRAM_RECEIVE) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_DGRAM_SEND", K_SYNC_DGRAM_SEND) < 0 ||
        PyModule_AddIntConstant(module, "UDP_DATAGRAM_RECEIVED", K_UDP_DATAGRAM_RECEIVED) < 0 ||
        PyModule_AddIntConstant(module, "UDP_SEND", K_UDP_SEND) < 0 ||
        PyModule_AddIntConstant(module, "UDP_ANEXT", K_UDP_ANEXT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
