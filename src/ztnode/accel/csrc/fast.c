/* The accelerator's per-packet entry points as CPython functions: the module ztnode._zt_fast.
 *
 * Why: through cffi, a call with a dozen integer and buffer arguments cost about 3 500
 * instructions before the C ran (each argument converted by a generic routine, the GIL dropped
 * and taken back), and the Python around it as much again: scratch buffers taken and given
 * back, datagrams copied out one slice at a time, a burst's records unpacked into tuples and
 * indexed field by field. A small TCP segment's cut is about 1 500 instructions of C. Here the
 * same C functions are called with the arguments read straight from the objects, the datagrams
 * come back as a list of bytes, and a receive burst's authenticated packets go to the sink's
 * on_plain from C, in order, with the arguments it takes.
 *
 * Nothing here decides anything: every function is the same computation as its cffi twin in
 * ztnode.accel / ztnode.transport.burst (which remain, and are what runs where this module is
 * missing), checked against it in tests. Pointers (AES contexts, the receive engine, its
 * buffers) arrive as integers: addresses of cffi objects the Python caller owns and keeps
 * alive. This module is private to those two callers.
 *
 * The module is built into the cffi extension (one shared library) and created by
 * zt_fast_register, which the loader calls once through cffi; it uses CPython's limited API
 * (3.11), as the extension does, plus PyObject_Vectorcall, which libpython 3.11 exports and
 * 3.12 made part of the stable ABI. */
#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x030B0000
#include <Python.h>

#include <string.h>
#include <errno.h>
#ifndef _WIN32
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include "zt_accel.h"

#ifndef PY_VECTORCALL_ARGUMENTS_OFFSET
#define PY_VECTORCALL_ARGUMENTS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1))
PyAPI_FUNC(PyObject *) PyObject_Vectorcall(PyObject *callable, PyObject *const *args,
                                           size_t nargsf, PyObject *kwnames);
#endif

/* A cut's output fits on the stack up to this (a small segment or frame and its fragment
 * headers); larger ones get a heap buffer. */
#define FAST_SCRATCH 4096
#define FAST_MAX_PIECES 16
/* Above this much payload a cut runs without the GIL (its crypto takes long enough for other
 * threads to matter); below, dropping and taking the GIL would cost more than the cut. */
#define FAST_NOGIL_BYTES 16384
/* A single cut's payload bound: far above any TCP segment the stack makes (64 KiB). */
#define FAST_MAX_PAYLOAD (1u << 24)

static PyObject *wrong_count(const char *name, Py_ssize_t want, Py_ssize_t got)
{
    PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", name, want, got);
    return NULL;
}

static int get_u64(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int get_int(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < -0x7fffffffL || v > 0x7fffffffL) {
        PyErr_SetString(PyExc_OverflowError, "argument out of range for a C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* A bytes object of at least `min` bytes. */
static int get_bytes(PyObject *o, Py_ssize_t min, const unsigned char **p, size_t *n)
{
    char *s;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(o, &s, &len) < 0)
        return -1;
    if (len < min) {
        PyErr_Format(PyExc_ValueError, "a %zd-byte argument where %zd are needed", len, min);
        return -1;
    }
    *p = (const unsigned char *)s;
    *n = (size_t)len;
    return 0;
}

/* The `n` datagrams written back to back into `out` as a list of bytes; None for an error
 * code (the caller then takes its Python path). */
static PyObject *datagram_list(const unsigned char *out, const unsigned int *lens, int n)
{
    PyObject *list;
    size_t at = 0;
    int i;
    if (n <= 0)
        Py_RETURN_NONE;
    list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)out + at, (Py_ssize_t)lens[i]);
        if (b == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, i, b); /* steals b */
        at += lens[i];
    }
    return list;
}

/* Output space for a cut: the stack's when it fits, else the heap's (freed by out_free). */
typedef struct {
    unsigned char stack[FAST_SCRATCH];
    unsigned int stack_lens[FAST_MAX_PIECES];
    unsigned char *out;
    unsigned int *lens;
    size_t cap;
    int max_out;
} out_space;

static int out_take(out_space *s, size_t cap, size_t max_out)
{
    if (cap <= FAST_SCRATCH && max_out <= FAST_MAX_PIECES) {
        s->out = s->stack;
        s->lens = s->stack_lens;
        s->cap = FAST_SCRATCH;
        s->max_out = FAST_MAX_PIECES;
        return 0;
    }
    s->out = PyMem_Malloc(cap);
    s->lens = PyMem_Malloc(max_out * sizeof(unsigned int));
    if (s->out == NULL || s->lens == NULL) {
        PyMem_Free(s->out);
        PyMem_Free(s->lens);
        PyErr_NoMemory();
        return -1;
    }
    s->cap = cap;
    s->max_out = (int)max_out;
    return 0;
}

static void out_free(out_space *s)
{
    if (s->out != s->stack) {
        PyMem_Free(s->out);
        PyMem_Free(s->lens);
    }
}

/* tx_tcp(aes, salsa_key, cipher, zthdr, pids, nwid, ethertype, hdr, ip_id, payload, seg_size,
 *        flags_last, mtu) -> list[bytes] | None: zt_tx_tcp (aes: a context's address or 0). */
static PyObject *fast_tx_tcp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t aes, nwid, ethertype, ip_id, seg_size, flags_last, mtu;
    const unsigned char *salsa, *zthdr, *pids, *hdr;
    size_t salsa_n, zthdr_n, pids_n, hdr_n, pieces;
    int cipher, n;
    Py_buffer pay;
    out_space space;
    PyObject *result;
    (void)self;
    if (nargs != 13)
        return wrong_count("tx_tcp", 13, nargs);
    if (get_u64(args[0], &aes) || get_bytes(args[1], 32, &salsa, &salsa_n) ||
        get_int(args[2], &cipher) || get_bytes(args[3], 28, &zthdr, &zthdr_n) ||
        get_bytes(args[4], 0, &pids, &pids_n) || get_u64(args[5], &nwid) ||
        get_u64(args[6], &ethertype) || get_bytes(args[7], 0, &hdr, &hdr_n) ||
        get_u64(args[8], &ip_id) || get_u64(args[10], &seg_size) ||
        get_u64(args[11], &flags_last) || get_u64(args[12], &mtu))
        return NULL;
    if (seg_size == 0 || seg_size > FAST_MAX_PAYLOAD || hdr_n > 256)
        Py_RETURN_NONE;
    if (PyObject_GetBuffer(args[9], &pay, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((size_t)pay.len > FAST_MAX_PAYLOAD) {
        PyBuffer_Release(&pay);
        Py_RETURN_NONE;
    }
    pieces = ((size_t)pay.len + seg_size - 1) / seg_size;
    if (pieces == 0)
        pieces = 1; /* no payload: one piece, the headers alone */
    if (out_take(&space, pieces * (28 + 10 + hdr_n + seg_size + 16 * 16),
                 pieces * FAST_MAX_PIECES) < 0) {
        PyBuffer_Release(&pay);
        return NULL;
    }
#define FAST_TX_TCP_CALL                                                                       \
    zt_tx_tcp((zt_aes_ctx *)(uintptr_t)aes, salsa, cipher, zthdr, pids, pids_n / 8, nwid,         \
              (unsigned int)ethertype, hdr, hdr_n, (unsigned int)ip_id,                          \
              (const unsigned char *)pay.buf, (size_t)pay.len, seg_size, (unsigned int)flags_last, \
              mtu, space.out, space.cap, space.lens, space.max_out)
    if (pay.len > FAST_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        n = FAST_TX_TCP_CALL;
        Py_END_ALLOW_THREADS
    } else {
        n = FAST_TX_TCP_CALL;
    }
#undef FAST_TX_TCP_CALL
    result = datagram_list(space.out, space.lens, n);
    out_free(&space);
    PyBuffer_Release(&pay);
    return result;
}

/* tx_frame(aes, salsa_key, cipher, zthdr, pid, nwid, ethertype, payload, mtu)
 *   -> list[bytes] | None: zt_tx_frame. */
static PyObject *fast_tx_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t aes, nwid, ethertype, mtu;
    const unsigned char *salsa, *zthdr, *pid;
    size_t salsa_n, zthdr_n, pid_n;
    int cipher, n;
    Py_buffer pay;
    out_space space;
    PyObject *result;
    (void)self;
    if (nargs != 9)
        return wrong_count("tx_frame", 9, nargs);
    if (get_u64(args[0], &aes) || get_bytes(args[1], 32, &salsa, &salsa_n) ||
        get_int(args[2], &cipher) || get_bytes(args[3], 28, &zthdr, &zthdr_n) ||
        get_bytes(args[4], 8, &pid, &pid_n) || get_u64(args[5], &nwid) ||
        get_u64(args[6], &ethertype) || get_u64(args[8], &mtu))
        return NULL;
    if (PyObject_GetBuffer(args[7], &pay, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((size_t)pay.len > FAST_MAX_PAYLOAD) {
        PyBuffer_Release(&pay);
        Py_RETURN_NONE;
    }
    if (out_take(&space, 38 + (size_t)pay.len + 16 * FAST_MAX_PIECES, FAST_MAX_PIECES) < 0) {
        PyBuffer_Release(&pay);
        return NULL;
    }
    n = zt_tx_frame((zt_aes_ctx *)(uintptr_t)aes, salsa, cipher, zthdr, pid, nwid,
                    (unsigned int)ethertype, (const unsigned char *)pay.buf, (size_t)pay.len, mtu,
                    space.out, space.cap, space.lens, space.max_out);
    result = datagram_list(space.out, space.lens, n);
    out_free(&space);
    PyBuffer_Release(&pay);
    return result;
}

/* tx_udp(aes, salsa_key, cipher, zthdr, pid, nwid, ethertype, hdr, ip_id, payload, mtu)
 *   -> list[bytes] | None: zt_tx_udp. */
static PyObject *fast_tx_udp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t aes, nwid, ethertype, ip_id, mtu;
    const unsigned char *salsa, *zthdr, *pid, *hdr;
    size_t salsa_n, zthdr_n, pid_n, hdr_n;
    int cipher, n;
    Py_buffer pay;
    out_space space;
    PyObject *result;
    (void)self;
    if (nargs != 11)
        return wrong_count("tx_udp", 11, nargs);
    if (get_u64(args[0], &aes) || get_bytes(args[1], 32, &salsa, &salsa_n) ||
        get_int(args[2], &cipher) || get_bytes(args[3], 28, &zthdr, &zthdr_n) ||
        get_bytes(args[4], 8, &pid, &pid_n) || get_u64(args[5], &nwid) ||
        get_u64(args[6], &ethertype) || get_bytes(args[7], 0, &hdr, &hdr_n) ||
        get_u64(args[8], &ip_id) || get_u64(args[10], &mtu))
        return NULL;
    if (PyObject_GetBuffer(args[9], &pay, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((size_t)pay.len > FAST_MAX_PAYLOAD || hdr_n > 256) {
        PyBuffer_Release(&pay);
        Py_RETURN_NONE;
    }
    if (out_take(&space, 38 + hdr_n + (size_t)pay.len + 16 * FAST_MAX_PIECES, FAST_MAX_PIECES) <
        0) {
        PyBuffer_Release(&pay);
        return NULL;
    }
    n = zt_tx_udp((zt_aes_ctx *)(uintptr_t)aes, salsa, cipher, zthdr, pid, nwid,
                  (unsigned int)ethertype, hdr, hdr_n, (unsigned int)ip_id,
                  (const unsigned char *)pay.buf, (size_t)pay.len, mtu, space.out, space.cap,
                  space.lens, space.max_out);
    result = datagram_list(space.out, space.lens, n);
    out_free(&space);
    PyBuffer_Release(&pay);
    return result;
}

/* The key of a sender's socket address in the reader's address table, as BurstReader's
 * _addr_key makes it: an int for IPv4 (address and port), a tuple for IPv6. */
static PyObject *addr_key(const zt_rx_rec *rec)
{
    if (rec->family == 4)
        return PyLong_FromUnsignedLongLong((unsigned long long)(rec->ip_lo << 16 | rec->port));
    return Py_BuildValue("(KKKK)", (unsigned long long)rec->ip_hi,
                         (unsigned long long)rec->ip_lo, (unsigned long long)rec->port,
                         (unsigned long long)rec->scope);
}

/* The packet ids of a joined record, as a tuple (empty for a single packet). */
static PyObject *joined_ids(const zt_rx_rec *rec, const uint64_t *ids)
{
    PyObject *t;
    uint64_t i;
    if (rec->frames <= 1)
        return PyTuple_New(0);
    t = PyTuple_New((Py_ssize_t)rec->frames);
    if (t == NULL)
        return NULL;
    for (i = 0; i < rec->frames; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong((unsigned long long)ids[rec->ids + i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SetItem(t, (Py_ssize_t)i, v); /* steals v */
    }
    return t;
}

#define PLAIN_ARGS 11

/* One PLAIN record to on_plain: 1 it took it, 0 it refused it (a stale key), -1 an error
 * raised; 2 when the record is not one this path takes (its key or address not in the tables:
 * the caller's Python path handles it). */
static int plain_one(const zt_rx_rec *rec, const unsigned char *arena, const uint64_t *ids,
                     PyObject *keys, PyObject *addrs, PyObject *on_plain)
{
    PyObject *argv[PLAIN_ARGS + 1];
    PyObject *src, *key, *akey, *addr, *res;
    int i, ok;
    src = PyLong_FromUnsignedLongLong((unsigned long long)rec->src);
    if (src == NULL)
        return -1;
    key = PyDict_GetItemWithError(keys, src); /* borrowed */
    if (key == NULL) {
        Py_DECREF(src);
        return PyErr_Occurred() ? -1 : 2;
    }
    akey = addr_key(rec);
    if (akey == NULL) {
        Py_DECREF(src);
        return -1;
    }
    addr = PyDict_GetItemWithError(addrs, akey); /* borrowed */
    Py_DECREF(akey);
    if (addr == NULL) {
        Py_DECREF(src);
        return PyErr_Occurred() ? -1 : 2;
    }
    /* on_plain may change either table: hold our own references for the call. */
    Py_INCREF(key);
    Py_INCREF(addr);
    argv[0] = NULL; /* the slot PY_VECTORCALL_ARGUMENTS_OFFSET lets the callee use */
    argv[1] = PyByteArray_FromStringAndSize((const char *)arena + rec->off, (Py_ssize_t)rec->len);
    argv[2] = key;
    argv[3] = addr;
    argv[4] = PyLong_FromUnsignedLongLong((unsigned long long)rec->pieces);
    argv[5] = PyLong_FromUnsignedLongLong((unsigned long long)rec->wire_bytes);
    argv[6] = PyLong_FromUnsignedLongLong((unsigned long long)rec->frames);
    argv[7] = joined_ids(rec, ids);
    argv[8] = rec->kind == ZT_RX_PLAIN_CHECKED ? Py_True : Py_False;
    Py_INCREF(argv[8]);
    argv[9] = src;
    argv[10] = PyLong_FromUnsignedLongLong((unsigned long long)rec->pid);
    argv[11] = rec->frame ? PyLong_FromUnsignedLongLong((unsigned long long)rec->nwid)
                          : PyLong_FromLong(-1);
    res = NULL;
    for (i = 1; i <= PLAIN_ARGS; i++)
        if (argv[i] == NULL)
            break;
    if (i > PLAIN_ARGS)
        res = PyObject_Vectorcall(on_plain, argv + 1, PLAIN_ARGS | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                  NULL);
    for (i = 1; i <= PLAIN_ARGS; i++)
        Py_XDECREF(argv[i]);
    if (res == NULL)
        return -1;
    ok = PyObject_IsTrue(res);
    Py_DECREF(res);
    return ok;
}

/* The PLAIN records from index `start` on to on_plain, as BurstReader.read's loop would hand
 * them, up to the first record this cannot take (another kind, a sender whose key or address is
 * not in `keys` or `addrs`) or that on_plain refuses: 2*i for a stop at record i (not handled:
 * the caller handles it its own way), 2*i+1 when on_plain refused record i, 2*n when all were
 * taken; -1 with an exception raised (by on_plain, or out of memory). */
static long plain_loop(const zt_rx_rec *recs, int n, int start, const unsigned char *arena,
                       size_t arena_len, const uint64_t *ids, PyObject *keys, PyObject *addrs,
                       PyObject *on_plain)
{
    int i;
    for (i = start; i < n; i++) {
        const zt_rx_rec *rec = &recs[i];
        int r;
        if ((rec->kind != ZT_RX_PLAIN && rec->kind != ZT_RX_PLAIN_CHECKED) ||
            rec->off > arena_len || rec->len > arena_len - rec->off ||
            rec->ids > ZT_RX_MAX_DGRAMS || rec->frames > ZT_RX_MAX_DGRAMS - rec->ids)
            break;
        r = plain_one(rec, arena, ids, keys, addrs, on_plain);
        if (r < 0)
            return -1;
        if (r == 2)
            break;
        if (r == 0)
            return 2L * i + 1;
    }
    return 2L * i;
}

/* A reader's fixed arguments, as BurstReader keeps them in one tuple: the engine, the socket,
 * the arena (the bytearray itself), the records, the ids (addresses of the cffi objects that
 * own them) and the datagrams a burst reads at most. */
typedef struct {
    zt_rx *rx;
    int fd;
    unsigned char *arena;
    size_t arena_len;
    zt_rx_rec *recs;
    uint64_t *ids;
    int burst;
} reader_args;

#define READER_ARGS 6

static int get_reader(PyObject *t, reader_args *r)
{
    uint64_t rx, recs, ids;
    PyObject *arena;
    if (!PyTuple_Check(t) || PyTuple_Size(t) != READER_ARGS) {
        PyErr_SetString(PyExc_TypeError, "a reader's arguments are a tuple of six");
        return -1;
    }
    arena = PyTuple_GetItem(t, 2);
    if (get_u64(PyTuple_GetItem(t, 0), &rx) || get_int(PyTuple_GetItem(t, 1), &r->fd) ||
        get_u64(PyTuple_GetItem(t, 3), &recs) || get_u64(PyTuple_GetItem(t, 4), &ids))
        return -1;
    if (!PyByteArray_Check(arena)) {
        PyErr_SetString(PyExc_TypeError, "a reader's arena is a bytearray");
        return -1;
    }
    if (get_int(PyTuple_GetItem(t, 5), &r->burst))
        return -1;
    if (r->burst < 1 || r->burst > ZT_RX_MAX_DGRAMS) {
        PyErr_SetString(PyExc_ValueError, "a reader's burst is 1 to ZT_RX_MAX_DGRAMS datagrams");
        return -1;
    }
    r->rx = (zt_rx *)(uintptr_t)rx;
    r->arena = (unsigned char *)PyByteArray_AsString(arena);
    r->arena_len = (size_t)PyByteArray_Size(arena);
    r->recs = (zt_rx_rec *)(uintptr_t)recs;
    r->ids = (uint64_t *)(uintptr_t)ids;
    return 0;
}

/* read(reader, gro, now, keys, addrs, on_plain) -> int: one burst (zt_rx_burst, without the
 * GIL: a burst of full segments is tens of microseconds of crypto), then its records from the
 * first on to on_plain as plain_loop hands them. A negative errno for a socket error; else
 * datagrams << 17 | dropped << 16 | n << 8 | stop: the datagrams the burst read, whether C
 * dropped any of them (the caller then reads the counters), n the records and stop
 * plain_loop's answer (2*i, 2*i+1 or 2*n). */
static PyObject *fast_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    reader_args r;
    const zt_rx_stats *stats;
    uint64_t now, datagrams, dropped;
    int gro, n;
    long stop;
    (void)self;
    if (nargs != 6)
        return wrong_count("read", 6, nargs);
    if (get_reader(args[0], &r) || get_int(args[1], &gro) || get_u64(args[2], &now))
        return NULL;
    if (!PyDict_Check(args[3]) || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "read takes two dicts");
        return NULL;
    }
    if (r.arena_len < (size_t)ZT_RX_ARENA) {
        PyErr_SetString(PyExc_ValueError, "read: the arena is too small");
        return NULL;
    }
    stats = zt_rx_get_stats(r.rx);
    datagrams = stats->datagrams;
    dropped = stats->dropped;
    Py_BEGIN_ALLOW_THREADS
    n = zt_rx_burst(r.rx, r.fd, r.arena, r.arena_len, r.recs, ZT_RX_MAX_DGRAMS, r.ids,
                    r.burst, gro, now);
    Py_END_ALLOW_THREADS
    if (n < 0)
        return PyLong_FromLong(n);
    datagrams = stats->datagrams - datagrams;
    dropped = stats->dropped != dropped;
    stop = n ? plain_loop(r.recs, n, 0, r.arena, r.arena_len, r.ids, args[3], args[4], args[5])
             : 0;
    if (stop < 0)
        return NULL;
    return PyLong_FromLongLong((long long)(datagrams << 17 | dropped << 16) | (long long)n << 8 |
                               stop);
}

/* plain_run(reader, n, start, keys, addrs, on_plain) -> int: plain_loop over the records of the
 * reader's last burst (n of them) from `start` on, for the caller to go on after a record it
 * handled itself. */
static PyObject *fast_plain_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    reader_args r;
    int n, start;
    long stop;
    (void)self;
    if (nargs != 6)
        return wrong_count("plain_run", 6, nargs);
    if (get_reader(args[0], &r) || get_int(args[1], &n) || get_int(args[2], &start))
        return NULL;
    if (!PyDict_Check(args[3]) || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "plain_run takes two dicts");
        return NULL;
    }
    if (n < 0 || n > ZT_RX_MAX_DGRAMS || start < 0) {
        PyErr_SetString(PyExc_ValueError, "plain_run: record count out of range");
        return NULL;
    }
    stop = plain_loop(r.recs, n, start, r.arena, r.arena_len, r.ids, args[3], args[4], args[5]);
    if (stop < 0)
        return NULL;
    return PyLong_FromLong(stop);
}

#ifndef _WIN32
/* sockaddr(ip, port, scope) -> bytes: the socket address of a packed IPv4 (4 bytes) or IPv6
 * (16) address, port and IPv6 scope id, as the kernel takes it; for sendto below, which the
 * transport calls with addresses it packed once. */
static PyObject *fast_sockaddr(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *ip;
    size_t ip_n;
    uint64_t port, scope;
    (void)self;
    if (nargs != 3)
        return wrong_count("sockaddr", 3, nargs);
    if (get_bytes(args[0], 4, &ip, &ip_n) || get_u64(args[1], &port) || get_u64(args[2], &scope))
        return NULL;
    if (port > 0xffff || scope > 0xffffffffu || (ip_n != 4 && ip_n != 16)) {
        PyErr_SetString(PyExc_ValueError, "sockaddr: a 4- or 16-byte address, a 16-bit port");
        return NULL;
    }
    if (ip_n == 4) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        memcpy(&sin.sin_addr, ip, 4);
        return PyBytes_FromStringAndSize((const char *)&sin, (Py_ssize_t)sizeof sin);
    } else {
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        memcpy(&sin6.sin6_addr, ip, 16);
        sin6.sin6_scope_id = (uint32_t)scope;
        return PyBytes_FromStringAndSize((const char *)&sin6, (Py_ssize_t)sizeof sin6);
    }
}

/* sendto(fd, data, sockaddr) -> int: one datagram to an address sockaddr() packed, as
 * socket.sendto sends it (an OSError, BlockingIOError for a full buffer, on failure) without
 * parsing the address each time or dropping the GIL (the socket does not block). */
static PyObject *fast_sendto(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    const unsigned char *sa;
    size_t sa_n;
    Py_buffer data;
    ssize_t sent;
    int err;
    (void)self;
    if (nargs != 3)
        return wrong_count("sendto", 3, nargs);
    if (get_int(args[0], &fd) || get_bytes(args[2], (Py_ssize_t)sizeof(struct sockaddr_in), &sa,
                                           &sa_n))
        return NULL;
    if (sa_n != sizeof(struct sockaddr_in) && sa_n != sizeof(struct sockaddr_in6)) {
        PyErr_SetString(PyExc_ValueError, "sendto: not an address sockaddr() made");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    sent = sendto(fd, data.buf, (size_t)data.len, 0, (const struct sockaddr *)sa, (socklen_t)sa_n);
    err = errno; /* releasing the buffer may free memory, which may touch errno */
    PyBuffer_Release(&data);
    if (sent < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t(sent);
}
#endif

static PyMethodDef fast_methods[] = {
    {"tx_tcp", (PyCFunction)(void (*)(void))fast_tx_tcp, METH_FASTCALL, NULL},
    {"tx_frame", (PyCFunction)(void (*)(void))fast_tx_frame, METH_FASTCALL, NULL},
    {"tx_udp", (PyCFunction)(void (*)(void))fast_tx_udp, METH_FASTCALL, NULL},
    {"read", (PyCFunction)(void (*)(void))fast_read, METH_FASTCALL, NULL},
    {"plain_run", (PyCFunction)(void (*)(void))fast_plain_run, METH_FASTCALL, NULL},
#ifndef _WIN32
    {"sockaddr", (PyCFunction)(void (*)(void))fast_sockaddr, METH_FASTCALL, NULL},
    {"sendto", (PyCFunction)(void (*)(void))fast_sendto, METH_FASTCALL, NULL},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "ztnode._zt_fast", NULL, -1, fast_methods, NULL, NULL, NULL, NULL,
};

int zt_fast_register(const char *name)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *m = PyModule_Create(&fast_module);
    int rc = -1;
    if (m != NULL) {
        rc = PyDict_SetItemString(PyImport_GetModuleDict(), name, m);
        Py_DECREF(m);
    }
    if (rc != 0)
        PyErr_Clear();
    PyGILState_Release(gil);
    return rc;
}
