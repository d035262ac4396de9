/* Compiled per-packet core of GB/T 28181 PS-over-RTP receiving (see rtp.py's PsRtpReceiver, the reference).
 *
 * Why: a 1080p 4 Mbps GB stream is ~400 RTP datagrams a second, and the Python path (socket read, media
 * guard, RTP header, sequence logic, gathering a picture's payloads) costs a few microseconds each. This
 * core does that per-packet work in C, making the same demuxer calls in the same order as PsRtpReceiver.
 *
 * Receiver.push() takes one packet; Receiver.feed_rfc4571() takes a TCP read of RFC 4571 frames (2-byte length
 * + RTP) cut anywhere, framing them as Rfc4571Decoder does (resync included) and keeping the partial tail;
 * Receiver.drain() reads a non-blocking UDP socket itself (recvfrom,
 * up to `limit` datagrams, stopping when it would block or on any error, as TickedUdpSocket does).
 * drain() handles in C only the packets the media guard would admit without a decision: from the latched
 * address (or any, when addresses are not checked) and carrying the expected SSRC (or too short to carry
 * one). It stops at any other packet and returns it with its source address, so the guard's rules,
 * counters and log lines stay in Python (vigil.gb28181.media_guard); latch() then pins the address of
 * that packet once the guard latched it.
 *
 * With a compiled Demuxer attached (_psdemux.c, the usual case) the calls go to it in C and the caller's
 * list receives its events (access units and audio frames, as _psdemux.c describes them): Python then
 * runs once per unit. Without one (a Python PsDemuxer: the reference, or a test's recorder) the calls
 * leave as entries appended to the caller's list, in order:
 *   (payload: bytes, wallclock: float, mono: float)  -> demuxer.receive_data(payload, wallclock, mono)
 *   None                                             -> demuxer.end_of_frame()
 *   str                                              -> demuxer.data_lost(str)
 * A PsError the attached demuxer reports stops its calls for the rest of that C call, as the reference's
 * batch stops at the raise; Python reads the report with Demuxer.take_status() and raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "_psdemux.h"

#define HEADER_LENGTH 12
#define MAX_PACKET_LENGTH 65535
#define MAX_MISORDER 100
#define MAX_PENDING (256 * 1024)
#define PLAIN_V2 0x80
#define DATAGRAM_BUFFER 65536

typedef struct {
    PyObject_HEAD
    int have_ssrc;
    uint32_t ssrc;
    int payload_type; /* -1: any */
    long seq;         /* -1 before the first accepted packet */
    uint32_t ts;
    int frame_open;
    long long packets, lost, gaps, late, wrong_ssrc, wrong_payload_type, malformed, frames;

    /* Payloads of the picture in progress not yet handed out, and when the first of them arrived. */
    unsigned char *pending;
    Py_ssize_t pending_len, pending_cap;
    double pending_wall, pending_mono;

    unsigned char *datagram; /* drain()'s receive buffer */
    struct sockaddr_storage last_addr; /* source of the last packet drain() returned to Python */
    socklen_t last_addrlen;
    struct sockaddr_storage latched;
    int have_latched;

    /* feed_rfc4571's framing state (Rfc4571Decoder's): bytes not yet framed from stream_pos on. */
    unsigned char *stream;
    Py_ssize_t stream_len, stream_cap, stream_pos;
    int searching;
    long long framed, resyncs, skipped_bytes;

    /* The compiled demuxer fed in C (a Demuxer, owned), or NULL: demuxer calls go to out for Python. */
    PsDemux *demux;

    PyObject *out; /* list receiving demuxer calls (or, with demux, its events) during one call (borrowed) */
    int failed;    /* a Python error is set (out of memory) */
} Receiver;

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void emit(Receiver *self, PyObject *entry) {
    if (entry == NULL) {
        self->failed = 1;
        return;
    }
    if (PyList_Append(self->out, entry) < 0) self->failed = 1;
    Py_DECREF(entry);
}

/* The attached demuxer takes calls until one reports PsError: the reference's _demux drops the rest of
 * the batch when receive_data raises, and one C call is one batch. */
static int demux_open(Receiver *self) {
    PsDemux *d = self->demux;
    if (d->failed) self->failed = 1;
    return !self->failed && d->status == PS_OK;
}

/* PsRtpReceiver._flush: the gathered payloads as one receive_data call. */
static void flush(Receiver *self) {
    if (self->pending_len == 0 || self->failed) return;
    if (self->demux != NULL) {
        if (demux_open(self)) psdemux_feed(self->demux, self->pending, self->pending_len, self->pending_wall, self->pending_mono);
        self->pending_len = 0;
        if (self->demux->failed) self->failed = 1;
        return;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)self->pending, self->pending_len);
    self->pending_len = 0;
    if (data == NULL) {
        self->failed = 1;
        return;
    }
    emit(self, Py_BuildValue("(Ndd)", data, self->pending_wall, self->pending_mono));
}

static void end_of_frame(Receiver *self) {
    if (self->failed) return;
    if (self->demux != NULL) {
        if (demux_open(self)) psdemux_end_of_frame(self->demux);
        if (self->demux->failed) self->failed = 1;
        return;
    }
    Py_INCREF(Py_None);
    emit(self, Py_None);
}

static int gather(Receiver *self, const unsigned char *p, Py_ssize_t n) {
    if (n == 0) return 0; /* nothing to copy, and no buffer before the first payload (memcpy from NULL is UB) */
    if (self->pending_len + n > self->pending_cap) {
        Py_ssize_t cap = self->pending_cap ? self->pending_cap : 65536;
        while (cap < self->pending_len + n) cap *= 2;
        unsigned char *grown = PyMem_Realloc(self->pending, cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            self->failed = 1;
            return -1;
        }
        self->pending = grown;
        self->pending_cap = cap;
    }
    memcpy(self->pending + self->pending_len, p, n);
    self->pending_len += n;
    return 0;
}

/* PsRtpReceiver.receive_packet, decision for decision. */
static void push_packet(Receiver *self, const unsigned char *b, Py_ssize_t length, double wall, double mono) {
    unsigned second, sequence;
    uint32_t timestamp, ssrc;
    Py_ssize_t start, end;
    if (length >= HEADER_LENGTH && b[0] == PLAIN_V2 && length <= MAX_PACKET_LENGTH) {
        start = HEADER_LENGTH;
        end = length;
    } else {
        /* RtpPacket.parse's checks; any failure is one malformed packet. */
        if (length < HEADER_LENGTH || length > MAX_PACKET_LENGTH || b[0] >> 6 != 2) {
            self->malformed++;
            return;
        }
        Py_ssize_t pos = HEADER_LENGTH + 4 * (Py_ssize_t)(b[0] & 0x0F);
        if (pos > length) {
            self->malformed++;
            return;
        }
        if (b[0] & 0x10) {
            if (pos + 4 > length) {
                self->malformed++;
                return;
            }
            Py_ssize_t words = be16(b + pos + 2);
            pos += 4;
            if (pos + 4 * words > length) {
                self->malformed++;
                return;
            }
            pos += 4 * words;
        }
        end = length;
        if (b[0] & 0x20) {
            Py_ssize_t padding = b[length - 1];
            if (padding == 0 || pos + padding > length) {
                self->malformed++;
                return;
            }
            end -= padding;
        }
        start = pos;
    }
    second = b[1];
    sequence = be16(b + 2);
    timestamp = be32(b + 4);
    ssrc = be32(b + 8);
    if (!self->have_ssrc) {
        self->have_ssrc = 1;
        self->ssrc = ssrc;
    } else if (ssrc != self->ssrc) {
        self->wrong_ssrc++;
        return;
    }
    if (self->payload_type >= 0 && (int)(second & 0x7F) != self->payload_type) {
        self->wrong_payload_type++;
        return;
    }
    if (self->seq >= 0) {
        unsigned step = (sequence - (unsigned)self->seq) & 0xFFFF;
        if (step == 0 || 0x10000 - step <= MAX_MISORDER) {
            self->late++;
            return;
        }
        if (step != 1) {
            self->gaps++;
            self->lost += step < 0x8000 ? step - 1 : 0;
            self->frame_open = 0;
            flush(self);
            if (!self->failed) {
                char reason[64]; /* UTF-8: the arrow is U+2192, as in the reference's message */
                snprintf(reason, sizeof(reason), "RTP sequence gap: %ld \xe2\x86\x92 %u", self->seq, sequence);
                if (self->demux == NULL) {
                    emit(self, PyUnicode_FromString(reason));
                } else {
                    if (demux_open(self)) psdemux_data_lost(self->demux, reason);
                    if (self->demux->failed) self->failed = 1;
                }
            }
        }
    }
    self->seq = sequence;
    self->packets++;
    if (self->frame_open && timestamp != self->ts) {
        self->frames++;
        flush(self);
        end_of_frame(self);
    }
    self->ts = timestamp;
    self->frame_open = 1;
    if (self->pending_len == 0) {
        self->pending_wall = wall;
        self->pending_mono = mono;
    }
    if (gather(self, b + start, end - start) < 0) return;
    if (second & 0x80) {
        self->frames++;
        self->frame_open = 0;
        flush(self);
        end_of_frame(self);
    } else if (self->pending_len >= MAX_PENDING) {
        flush(self);
    }
}

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    long long ssrc;
    int payload_type;
    PyObject *demux = Py_None;
    if (!PyArg_ParseTuple(args, "Li|O", &ssrc, &payload_type, &demux)) return -1;
    if (demux != Py_None && !PyObject_TypeCheck(demux, &PsDemuxType)) {
        PyErr_SetString(PyExc_TypeError, "demuxer must be a _fastps.Demuxer or None");
        return -1;
    }
    if (ssrc > 0xFFFFFFFFLL || ssrc < -1 || payload_type > 0x7F || payload_type < -1) {
        PyErr_SetString(PyExc_ValueError, "SSRC must be -1 or 0..2^32-1, payload type -1 or 0..127");
        return -1;
    }
    self->have_ssrc = ssrc >= 0;
    self->ssrc = ssrc >= 0 ? (uint32_t)ssrc : 0;
    self->payload_type = payload_type;
    self->seq = -1;
    self->ts = 0;
    self->frame_open = 0;
    self->packets = self->lost = self->gaps = self->late = 0;
    self->wrong_ssrc = self->wrong_payload_type = self->malformed = self->frames = 0;
    self->pending_len = 0;
    self->have_latched = 0;
    self->last_addrlen = 0;
    self->stream_len = self->stream_pos = 0;
    self->searching = 0;
    self->framed = self->resyncs = self->skipped_bytes = 0;
    Py_XINCREF(demux == Py_None ? NULL : demux);
    Py_XSETREF(self->demux, demux == Py_None ? NULL : (PsDemux *)demux);
    if (self->datagram == NULL) {
        self->datagram = PyMem_Malloc(DATAGRAM_BUFFER);
        if (self->datagram == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static void Receiver_dealloc(Receiver *self) {
    PyMem_Free(self->pending);
    PyMem_Free(self->datagram);
    PyMem_Free(self->stream);
    Py_XDECREF(self->demux);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int begin_call(Receiver *self, PyObject *out) {
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "out must be a list");
        return -1;
    }
    if (self->datagram == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver not initialised");
        return -1;
    }
    if (self->demux != NULL && self->demux->out != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the demuxer is in another call");
        return -1;
    }
    self->out = out;
    self->failed = 0;
    if (self->demux != NULL) {
        self->demux->out = out;
        self->demux->failed = 0;
    }
    return 0;
}

static PyObject *end_call(Receiver *self, PyObject *result) {
    self->out = NULL;
    if (self->demux != NULL) {
        if (self->demux->failed) self->failed = 1;
        self->demux->out = NULL;
    }
    if (self->failed) {
        Py_XDECREF(result);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    return result;
}

static PyObject *Receiver_push(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(packet, wallclock, mono, out) takes 4 arguments");
        return NULL;
    }
    double wall = PyFloat_AsDouble(args[1]);
    if (wall == -1.0 && PyErr_Occurred()) return NULL;
    double mono = PyFloat_AsDouble(args[2]);
    if (mono == -1.0 && PyErr_Occurred()) return NULL;
    if (begin_call(self, args[3]) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return end_call(self, NULL);
    push_packet(self, view.buf, view.len, wall, mono);
    PyBuffer_Release(&view);
    Py_INCREF(Py_None);
    return end_call(self, Py_None);
}

static PyObject *Receiver_flush(Receiver *self, PyObject *out) {
    if (begin_call(self, out) < 0) return NULL;
    flush(self);
    Py_INCREF(Py_None);
    return end_call(self, Py_None);
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        /* Python's (host, port, flowinfo, scope_id) tuples compare all four. */
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_flowinfo == y->sin6_flowinfo &&
               x->sin6_scope_id == y->sin6_scope_id && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/* The address as Python's socket module gives it for recvfrom (makesockaddr: inet_ntop, no %scope suffix). */
static PyObject *address_tuple(const struct sockaddr_storage *sa) {
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "address family %d is not IP", (int)sa->ss_family);
    return NULL;
}

static PyObject *Receiver_drain(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "drain(fd, limit, ssrc, check_address, wallclock, mono, out) takes 7 arguments");
        return NULL;
    }
    int fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t limit = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    unsigned long filter = PyLong_AsUnsignedLong(args[2]);
    if (filter == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    int check_address = PyObject_IsTrue(args[3]);
    if (check_address < 0) return NULL;
    double wall = PyFloat_AsDouble(args[4]);
    if (wall == -1.0 && PyErr_Occurred()) return NULL;
    double mono = PyFloat_AsDouble(args[5]);
    if (mono == -1.0 && PyErr_Occurred()) return NULL;
    if (begin_call(self, args[6]) < 0) return NULL;
    unsigned char *buf = self->datagram;
    Py_ssize_t taken = 0;
    while (taken < limit && !self->failed) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        ssize_t n = recvfrom(fd, buf, DATAGRAM_BUFFER, 0, (struct sockaddr *)&sa, &salen);
        if (n < 0) break; /* would block, interrupted, or an ICMP error: the tick ends, as in TickedUdpSocket */
        taken++;
        int admitted = (!check_address || (self->have_latched && same_address(&sa, &self->latched))) &&
                       (n < HEADER_LENGTH || be32(buf + 8) == (uint32_t)filter);
        if (admitted) {
            push_packet(self, buf, n, wall, mono);
            continue;
        }
        /* The guard decides this one (in Python). */
        self->last_addr = sa;
        self->last_addrlen = salen;
        PyObject *addr = address_tuple(&sa);
        if (addr == NULL) {
            self->failed = 1;
            break;
        }
        return end_call(self, Py_BuildValue("(n(y#N))", taken, (const char *)buf, (Py_ssize_t)n, addr));
    }
    return end_call(self, Py_BuildValue("(nO)", taken, Py_None));
}

/* Rfc4571Decoder._plausible with an SSRC: 1, 0, or -1 when more bytes are needed to tell. */
static int plausible(const Receiver *self, Py_ssize_t pos, uint32_t ssrc) {
    const unsigned char *b = self->stream + pos;
    if (self->stream_len - pos < 14) return -1;
    if ((Py_ssize_t)be16(b) < HEADER_LENGTH || b[2] >> 6 != 2) return 0;
    return be32(b + 10) == ssrc;
}

static void compact(Receiver *self) {
    if (self->stream_pos == 0) return;
    self->stream_len -= self->stream_pos;
    memmove(self->stream, self->stream + self->stream_pos, (size_t)self->stream_len);
    self->stream_pos = 0;
}

static PyObject *Receiver_feed_rfc4571(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "feed_rfc4571(data, ssrc, wallclock, mono, out) takes 5 arguments");
        return NULL;
    }
    unsigned long filter = PyLong_AsUnsignedLong(args[1]);
    if (filter == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (filter > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "SSRC out of range");
        return NULL;
    }
    double wall = PyFloat_AsDouble(args[2]);
    if (wall == -1.0 && PyErr_Occurred()) return NULL;
    double mono = PyFloat_AsDouble(args[3]);
    if (mono == -1.0 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len > 0) {
        compact(self);
        if (self->stream_len + view.len > self->stream_cap) {
            Py_ssize_t cap = self->stream_cap ? self->stream_cap : 65536;
            while (cap < self->stream_len + view.len) cap *= 2;
            unsigned char *grown = PyMem_Realloc(self->stream, (size_t)cap);
            if (grown == NULL) {
                PyBuffer_Release(&view);
                return PyErr_NoMemory();
            }
            self->stream = grown;
            self->stream_cap = cap;
        }
        memcpy(self->stream + self->stream_len, view.buf, (size_t)view.len);
        self->stream_len += view.len;
    }
    PyBuffer_Release(&view);
    if (begin_call(self, args[4]) < 0) return NULL;
    Py_ssize_t taken = 0;
    while (!self->failed) {
        Py_ssize_t pos = self->stream_pos;
        int ok = plausible(self, pos, (uint32_t)filter);
        if (ok < 0) break;
        if (!ok) {
            if (!self->searching) {
                self->searching = 1;
                self->resyncs++;
            }
            self->stream_pos++;
            self->skipped_bytes++;
            continue;
        }
        self->searching = 0;
        Py_ssize_t length = be16(self->stream + pos);
        if (self->stream_len - pos - 2 < length) break;
        const unsigned char *packet = self->stream + pos + 2;
        self->stream_pos = pos + 2 + length;
        self->framed++;
        taken++;
        /* Framing confirmed the SSRC, so the media guard admits it without a decision (TCP has no address). */
        push_packet(self, packet, length, wall, mono);
    }
    return end_call(self, PyLong_FromSsize_t(taken));
}

static PyObject *Receiver_latch(Receiver *self, PyObject *unused) {
    if (self->last_addrlen == 0) {
        PyErr_SetString(PyExc_RuntimeError, "no packet was handed out to latch its address");
        return NULL;
    }
    self->latched = self->last_addr;
    self->have_latched = 1;
    Py_RETURN_NONE;
}

static PyObject *Receiver_get_ssrc(Receiver *self, void *closure) {
    if (!self->have_ssrc) Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->ssrc);
}

static int Receiver_set_ssrc(Receiver *self, PyObject *value, void *closure) {
    if (value == NULL || value == Py_None) {
        self->have_ssrc = 0;
        return 0;
    }
    unsigned long ssrc = PyLong_AsUnsignedLong(value);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (ssrc > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "SSRC out of range");
        return -1;
    }
    self->have_ssrc = 1;
    self->ssrc = (uint32_t)ssrc;
    return 0;
}

static PyObject *Receiver_get_latched(Receiver *self, void *closure) { return PyBool_FromLong(self->have_latched); }

static PyMethodDef Receiver_methods[] = {
    {"push", (PyCFunction)(void (*)(void))Receiver_push, METH_FASTCALL,
     "push(packet, wallclock, mono, out): one RTP packet; demuxer calls are appended to out."},
    {"flush", (PyCFunction)Receiver_flush, METH_O, "flush(out): hand out the payloads gathered so far."},
    {"drain", (PyCFunction)(void (*)(void))Receiver_drain, METH_FASTCALL,
     "drain(fd, limit, ssrc, check_address, wallclock, mono, out) -> (taken, None | (packet, address)): read up "
     "to limit datagrams from the non-blocking socket fd; stops at one the media guard must decide, returned."},
    {"feed_rfc4571", (PyCFunction)(void (*)(void))Receiver_feed_rfc4571, METH_FASTCALL,
     "feed_rfc4571(data, ssrc, wallclock, mono, out) -> taken: frame a TCP read's RFC 4571 bytes (the partial "
     "tail is kept) as Rfc4571Decoder(ssrc=ssrc) does and take the packets."},
    {"latch", (PyCFunction)Receiver_latch, METH_NOARGS,
     "latch(): admit from now on the source address of the packet drain() last returned."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Receiver_members[] = {
    {"packets", T_LONGLONG, offsetof(Receiver, packets), READONLY, "RTP packets accepted"},
    {"lost", T_LONGLONG, offsetof(Receiver, lost), READONLY, "packets missing according to sequence numbers"},
    {"gaps", T_LONGLONG, offsetof(Receiver, gaps), READONLY, "sequence gaps"},
    {"late", T_LONGLONG, offsetof(Receiver, late), READONLY, "late or duplicate packets ignored"},
    {"wrong_ssrc", T_LONGLONG, offsetof(Receiver, wrong_ssrc), READONLY, "packets of another SSRC"},
    {"wrong_payload_type", T_LONGLONG, offsetof(Receiver, wrong_payload_type), READONLY, "another payload type"},
    {"malformed", T_LONGLONG, offsetof(Receiver, malformed), READONLY, "not RTP"},
    {"frames", T_LONGLONG, offsetof(Receiver, frames), READONLY, "pictures closed by marker or timestamp change"},
    {"framed", T_LONGLONG, offsetof(Receiver, framed), READONLY, "RFC 4571 frames taken by feed_rfc4571"},
    {"resyncs", T_LONGLONG, offsetof(Receiver, resyncs), READONLY, "times RFC 4571 framing was lost and found"},
    {"skipped_bytes", T_LONGLONG, offsetof(Receiver, skipped_bytes), READONLY, "bytes skipped resyncing"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Receiver_getset[] = {
    {"ssrc", (getter)Receiver_get_ssrc, (setter)Receiver_set_ssrc, "the expected SSRC (None: the first seen)", NULL},
    {"latched", (getter)Receiver_get_latched, NULL, "whether a source address is latched", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vigil.protocols.ps._fastps.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compiled per-packet core of PsRtpReceiver (and of draining a UDP media socket).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_methods = Receiver_methods,
    .tp_members = Receiver_members,
    .tp_getset = Receiver_getset,
};

/* find_start_code(buf, start): bytearray.find(b"\x00\x00\x01", start) for start >= 0, by memchr for the 0x01
 * (rare in coded video) and a look back: several times faster than CPython's generic search, and the PS
 * demuxer scans every byte of the stream for start codes. */
static PyObject *find_start_code(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "find_start_code(buf, start) takes 2 arguments");
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred()) return NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "start must be >= 0");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t found = psdemux_find_start_code(view.buf, view.len, start);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef module_methods[] = {
    {"find_start_code", (PyCFunction)(void (*)(void))find_start_code, METH_FASTCALL,
     "find_start_code(buf, start) -> int: buf.find(b'\\x00\\x00\\x01', start) for start >= 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastps", "Compiled per-packet core of PS-over-RTP receiving.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastps(void) {
    if (PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&PsDemuxType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PsDemuxType);
    if (PyModule_AddObject(m, "Demuxer", (PyObject *)&PsDemuxType) < 0) {
        Py_DECREF(&PsDemuxType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(&ReceiverType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
