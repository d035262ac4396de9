/* Compiled core of the H.264/H.265 RTP depacketizer (see depacketize.py for the rules it follows).
 *
 * Why: at 4 Mbps a camera sends ~350 RTP packets/s, and the pure-Python depacketizer costs a few
 * microseconds per packet. This core does the same work per packet in C and hands Python whole
 * access units, so Python runs per picture (25/s) instead of per packet. It also walks runs of
 * RTSP interleaved frames (RFC 2326 §10.12) straight out of the parser's buffer.
 *
 * It mirrors vigil.protocols.rtp.depacketize.Depacketizer's general path decision for decision:
 * same counters, same damage messages, same timestamps. tests/protocols/rtp/test_fast_depacketize.py
 * checks that with hypothesis. Sans-I/O: bytes in, tuples out, no clock and no allocation per
 * packet beyond growing the unit buffer.
 *
 * A unit leaves as the tuple (data: bytes, pts: int, dts: int, keyframe: bool, parameter_sets)
 * where parameter_sets is the tuple of current parameter sets when they changed since the last
 * unit (the caller builds a new track from it), else None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define VIDEO_CLOCK_RATE 90000
#define MAX_PS 3

typedef struct {
    PyObject_HEAD
    int h265;
    int payload_type; /* -1: any */
    long long clock_rate;
    int nps;
    int ps_types[MAX_PS];
    PyObject *params[MAX_PS]; /* bytes or NULL */
    int params_changed;

    /* The unit being assembled: the first len bytes of the bytes object unit (capacity cap), which
     * leaves as the unit's data once shrunk to len: the payload is copied once, from the packet.
     * typical is the size of the last picture that was not a keyframe. */
    PyObject *unit;
    unsigned char *buf;
    Py_ssize_t cap;
    Py_ssize_t len;
    Py_ssize_t typical;
    int have_au;
    uint32_t au_ts;
    int key;
    int broken;
    Py_ssize_t fu_start; /* offset of the 4-byte length prefix of the FU NAL, or -1 */
    int waiting_keyframe;

    int have_ssrc;
    uint32_t ssrc;
    long seq; /* -1 before the first packet */
    uint32_t ts_last;
    long long ts_ext;
    int ts_started;
    int ts_rebase;
    long long ts_delta;
    long long last_dts;

    long long packets, corrupt, lost, late, ignored, skipped, units, frames;
    char last_error[160];
    PyObject *out; /* list receiving units during one call (borrowed) */
    int failed;    /* a Python error is set (out of memory) */
} Core;

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void set_error(Core *self, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(self->last_error, sizeof(self->last_error), fmt, ap);
    va_end(ap);
}

static void damage(Core *self, const char *reason) {
    self->broken = 1;
    self->fu_start = -1;
    set_error(self, "%s", reason);
}

#define MIN_UNIT_CAPACITY 65536

/* Room for extra more bytes in the unit being assembled. The bytes object is ours alone until it
 * leaves (refcount 1), so it may be resized in place. A new one starts at twice the typical picture:
 * ordinary pictures then never grow and shrink in place when they leave; a keyframe (a few per GOP,
 * several times bigger) grows by doubling. Starting every unit at keyframe size instead would make
 * the heap grow and shrink with every picture (page faults) for no copy saved. */
static int ensure(Core *self, Py_ssize_t extra) {
    Py_ssize_t need = self->len + extra;
    if (self->unit != NULL && need <= self->cap) return 0;
    Py_ssize_t cap = self->unit != NULL ? self->cap : 2 * self->typical;
    if (cap < MIN_UNIT_CAPACITY) cap = MIN_UNIT_CAPACITY;
    while (cap < need) cap *= 2;
    if (self->unit == NULL) {
        self->unit = PyBytes_FromStringAndSize(NULL, cap);
    } else if (_PyBytes_Resize(&self->unit, cap) < 0) {
        self->unit = NULL; /* _PyBytes_Resize freed it */
    }
    if (self->unit == NULL) {
        self->len = self->cap = 0;
        self->buf = NULL;
        self->failed = 1;
        return -1;
    }
    self->buf = (unsigned char *)PyBytes_AS_STRING(self->unit);
    self->cap = cap;
    return 0;
}

/* The assembled unit as a bytes object of exactly len bytes; the next unit starts a new one. */
static PyObject *take_unit(Core *self) {
    PyObject *data = self->unit;
    Py_ssize_t len = self->len;
    self->unit = NULL;
    self->buf = NULL;
    self->cap = self->len = 0;
    if (!self->key) self->typical = len;
    if (data == NULL) return PyBytes_FromStringAndSize(NULL, 0);
    if (_PyBytes_Resize(&data, len) < 0) return NULL; /* shrinking: realloc, in place */
    return data;
}

static void append(Core *self, const unsigned char *data, Py_ssize_t size) {
    if (self->failed || ensure(self, size) < 0) return;
    memcpy(self->buf + self->len, data, (size_t)size);
    self->len += size;
}

static int ps_index(Core *self, int nal_type) {
    for (int i = 0; i < self->nps; i++)
        if (self->ps_types[i] == nal_type) return i;
    return -1;
}

/* Keyframe-ness and parameter sets of a NAL just appended. */
static void note(Core *self, int nal_type, const unsigned char *nal, Py_ssize_t size) {
    if (self->h265) {
        if (nal_type >= 16 && nal_type <= 23) self->key = 1;
    } else if (nal_type == 5) {
        self->key = 1;
    }
    int i = ps_index(self, nal_type);
    if (i < 0) return;
    PyObject *old = self->params[i];
    if (old != NULL && PyBytes_GET_SIZE(old) == size && memcmp(PyBytes_AS_STRING(old), nal, (size_t)size) == 0)
        return;
    PyObject *value = PyBytes_FromStringAndSize((const char *)nal, size);
    if (value == NULL) {
        self->failed = 1;
        return;
    }
    Py_XSETREF(self->params[i], value);
    self->params_changed = 1;
}

static void nal_unit(Core *self, const unsigned char *nal, Py_ssize_t size, int nal_type) {
    unsigned char prefix[4] = {(unsigned char)(size >> 24), (unsigned char)(size >> 16), (unsigned char)(size >> 8),
                               (unsigned char)size};
    append(self, prefix, 4);
    append(self, nal, size);
    note(self, nal_type, nal, size);
}

static void aggregate(Core *self, const unsigned char *p, Py_ssize_t size, Py_ssize_t pos) {
    if (pos >= size) {
        damage(self, "empty aggregation packet");
        return;
    }
    while (pos < size) {
        if (pos + 2 > size) {
            damage(self, "aggregation packet truncated inside a NAL size");
            return;
        }
        Py_ssize_t length = be16(p + pos);
        pos += 2;
        if (length == 0 || pos + length > size) {
            self->broken = 1;
            self->fu_start = -1;
            set_error(self, "aggregated NAL of %zd bytes does not fit the packet", length);
            return;
        }
        const unsigned char *nal = p + pos;
        nal_unit(self, nal, length, self->h265 ? (nal[0] >> 1) & 0x3F : nal[0] & 0x1F);
        pos += length;
    }
}

static void end_fragment(Core *self, int nal_type) {
    Py_ssize_t start = self->fu_start;
    self->fu_start = -1;
    if (self->failed) return;
    Py_ssize_t size = self->len - start - 4;
    unsigned char *b = self->buf + start;
    b[0] = (unsigned char)(size >> 24);
    b[1] = (unsigned char)(size >> 16);
    b[2] = (unsigned char)(size >> 8);
    b[3] = (unsigned char)size;
    note(self, nal_type, b + 4, size);
}

static void fragment(Core *self, const unsigned char *header, Py_ssize_t header_size, int nal_type, int fu_header,
                     const unsigned char *data, Py_ssize_t size) {
    if (fu_header & 0x80) {
        if (self->fu_start >= 0) {
            damage(self, "FU start fragment while the previous FU was unfinished");
            return;
        }
        static const unsigned char zero[4] = {0, 0, 0, 0};
        self->fu_start = self->len;
        append(self, zero, 4);
        append(self, header, header_size);
    } else if (self->fu_start < 0) {
        damage(self, "FU continuation without a start fragment");
        return;
    }
    append(self, data, size);
    if (fu_header & 0x40) end_fragment(self, nal_type);
}

static void payload_h264(Core *self, const unsigned char *p, Py_ssize_t size) {
    if (size == 0) {
        damage(self, "empty RTP payload");
        return;
    }
    int kind = p[0] & 0x1F;
    if (kind >= 1 && kind <= 23) {
        nal_unit(self, p, size, kind);
    } else if (kind == 24) {
        aggregate(self, p, size, 1);
    } else if (kind == 28) {
        if (size < 3) {
            damage(self, "FU-A packet too short");
            return;
        }
        int fu_header = p[1];
        int nal_type = fu_header & 0x1F;
        unsigned char header = (unsigned char)((p[0] & 0xE0) | nal_type);
        fragment(self, &header, 1, nal_type, fu_header, p + 2, size - 2);
    } else {
        self->broken = 1;
        self->fu_start = -1;
        set_error(self, "unsupported H.264 RTP packet type %d", kind);
    }
}

static void payload_h265(Core *self, const unsigned char *p, Py_ssize_t size) {
    if (size < 3) {
        damage(self, "H.265 RTP payload too short");
        return;
    }
    int kind = (p[0] >> 1) & 0x3F;
    if (kind < 48) {
        nal_unit(self, p, size, kind);
    } else if (kind == 48) {
        aggregate(self, p, size, 2);
    } else if (kind == 49) {
        int fu_header = p[2];
        int nal_type = fu_header & 0x3F;
        unsigned char header[2] = {(unsigned char)((p[0] & 0x81) | (nal_type << 1)), p[1]};
        fragment(self, header, 2, nal_type, fu_header, p + 3, size - 3);
    } else {
        self->broken = 1;
        self->fu_start = -1;
        set_error(self, "unsupported H.265 RTP packet type %d", kind);
    }
}

static void start_unit(Core *self, uint32_t ts) {
    self->have_au = 1;
    self->au_ts = ts;
    self->len = 0;
    self->key = 0;
    self->broken = 0;
    self->fu_start = -1;
    if (!self->ts_started) {
        self->ts_started = 1;
        self->ts_last = ts;
    } else if (self->ts_rebase) {
        self->ts_rebase = 0;
        self->ts_ext += self->ts_delta > 1 ? self->ts_delta : 1;
        self->ts_last = ts;
    } else {
        long long delta = (int32_t)(ts - self->ts_last); /* signed distance modulo 2^32 */
        self->ts_ext += delta;
        self->ts_last = ts;
        if (delta > 0) self->ts_delta = delta;
    }
}

static long long floor_div(long long a, long long b) {
    long long q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static void finish_unit(Core *self) {
    if (!self->have_au) return;
    self->have_au = 0;
    if (self->fu_start >= 0 && !self->broken) damage(self, "FU ended without its end fragment");
    if (self->broken) {
        self->corrupt++;
        self->waiting_keyframe = 1;
        return;
    }
    if (self->len == 0 || self->failed) return;
    if (self->waiting_keyframe) {
        int complete = 1;
        for (int i = 0; i < self->nps; i++)
            if (self->params[i] == NULL) complete = 0;
        if (!self->key || !complete) {
            self->skipped++;
            return;
        }
        self->waiting_keyframe = 0;
    }
    PyObject *ps = Py_None;
    Py_INCREF(ps);
    if (self->params_changed) {
        self->params_changed = 0;
        Py_DECREF(ps);
        ps = PyTuple_New(self->nps);
        if (ps == NULL) {
            self->failed = 1;
            return;
        }
        for (int i = 0; i < self->nps; i++) {
            Py_INCREF(self->params[i]);
            PyTuple_SET_ITEM(ps, i, self->params[i]);
        }
    }
    long long pts = self->clock_rate == VIDEO_CLOCK_RATE ? self->ts_ext
                                                          : floor_div(self->ts_ext * VIDEO_CLOCK_RATE, self->clock_rate);
    long long dts = pts > self->last_dts ? pts : self->last_dts + 1;
    self->last_dts = dts;
    self->units++;
    PyObject *data = take_unit(self);
    if (data == NULL) {
        Py_DECREF(ps);
        self->failed = 1;
        return;
    }
    PyObject *unit = Py_BuildValue("(NLLON)", data, pts, dts, self->key ? Py_True : Py_False, ps);
    if (unit == NULL || PyList_Append(self->out, unit) < 0) self->failed = 1;
    Py_XDECREF(unit);
}

static void bad_packet(Core *self) { self->corrupt++; }

/* One RTP packet (header included). */
static void push_packet(Core *self, const unsigned char *d, Py_ssize_t size) {
    if (size < 12) {
        bad_packet(self);
        set_error(self, "RTP packet of %zd bytes is shorter than its header", size);
        return;
    }
    int first = d[0], second = d[1];
    unsigned seq = be16(d + 2);
    uint32_t ts = be32(d + 4), ssrc = be32(d + 8);
    if ((first & 0xC0) != 0x80) {
        bad_packet(self);
        set_error(self, "RTP version %d, expected 2", first >> 6);
        return;
    }
    if (self->payload_type >= 0 && (second & 0x7F) != self->payload_type) {
        self->ignored++;
        return;
    }
    Py_ssize_t offset = 12 + 4 * (first & 0x0F);
    if (first & 0x10) {
        if (offset + 4 > size) {
            bad_packet(self);
            set_error(self, "RTP extension header runs past the packet end");
            return;
        }
        offset += 4 + 4 * (Py_ssize_t)be16(d + offset + 2);
    }
    Py_ssize_t end = size;
    if (first & 0x20) end -= d[size - 1];
    if (offset > end || end > size) {
        bad_packet(self);
        set_error(self, "RTP header, extension or padding longer than the packet");
        return;
    }
    self->packets++;

    int gap = 0;
    if (!self->have_ssrc || ssrc != self->ssrc) {
        if (self->have_ssrc) {
            self->ts_rebase = 1;
            gap = 1;
            set_error(self, "SSRC changed from %08x to %08x", (unsigned)self->ssrc, (unsigned)ssrc);
        }
        self->ssrc = ssrc;
        self->have_ssrc = 1;
    } else if (self->seq >= 0) {
        unsigned step = (seq - (unsigned)self->seq) & 0xFFFF;
        if (step != 1) {
            if (step == 0 || step >= 0x8000) {
                self->late++;
                return;
            }
            self->lost += step - 1;
            gap = 1;
            set_error(self, "%u RTP packets lost before sequence %u", step - 1, seq);
        }
    }
    self->seq = (long)seq;

    if (!self->have_au || ts != self->au_ts) {
        if (self->have_au) {
            if (gap) self->broken = 1;
            finish_unit(self);
        }
        start_unit(self, ts);
    }
    if (gap) self->broken = 1;
    if (!self->broken) {
        if (self->h265)
            payload_h265(self, d + offset, end - offset);
        else
            payload_h264(self, d + offset, end - offset);
    }
    if (second & 0x80) finish_unit(self);
}

/* -- Python type -- */

static int Core_init(Core *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"h265", "payload_type", "clock_rate", "parameter_sets", NULL};
    int h265;
    int payload_type;
    long long clock_rate;
    PyObject *sets;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "piLO!", kwlist, &h265, &payload_type, &clock_rate, &PyTuple_Type,
                                     &sets))
        return -1;
    if (clock_rate <= 0) {
        PyErr_Format(PyExc_ValueError, "clock rate must be positive, got %lld", clock_rate);
        return -1;
    }
    self->h265 = h265;
    self->payload_type = payload_type;
    self->clock_rate = clock_rate;
    if (h265) {
        self->nps = 3;
        self->ps_types[0] = 32;
        self->ps_types[1] = 33;
        self->ps_types[2] = 34;
    } else {
        self->nps = 2;
        self->ps_types[0] = 7;
        self->ps_types[1] = 8;
    }
    for (int i = 0; i < MAX_PS; i++) Py_CLEAR(self->params[i]);
    if (PyTuple_GET_SIZE(sets) == self->nps) {
        for (int i = 0; i < self->nps; i++) {
            PyObject *item = PyTuple_GET_ITEM(sets, i);
            if (!PyBytes_Check(item)) {
                PyErr_SetString(PyExc_TypeError, "parameter sets must be bytes");
                return -1;
            }
            Py_INCREF(item);
            self->params[i] = item;
        }
    }
    self->params_changed = 1;
    self->len = 0;
    self->have_au = 0;
    self->key = self->broken = 0;
    self->fu_start = -1;
    self->waiting_keyframe = 1;
    self->have_ssrc = 0;
    self->seq = -1;
    self->ts_last = 0;
    self->ts_ext = 0;
    self->ts_started = self->ts_rebase = 0;
    self->ts_delta = 0;
    self->last_dts = -1;
    self->packets = self->corrupt = self->lost = self->late = self->ignored = self->skipped = self->units = 0;
    self->frames = 0;
    self->last_error[0] = 0;
    self->failed = 0;
    return 0;
}

static void Core_dealloc(Core *self) {
    for (int i = 0; i < MAX_PS; i++) Py_CLEAR(self->params[i]);
    Py_CLEAR(self->unit);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *begin_call(Core *self, PyObject *out) {
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "out must be a list");
        return NULL;
    }
    self->out = out;
    self->failed = 0;
    return out;
}

static PyObject *end_call(Core *self, PyObject *result) {
    self->out = NULL;
    if (self->failed) {
        Py_XDECREF(result);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    return result;
}

static PyObject *Core_push(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(data, start, end, out) takes 4 arguments");
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t end = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (end == -1 && PyErr_Occurred()) return NULL;
    if (begin_call(self, args[3]) == NULL) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (start < 0 || end < start || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "span %zd:%zd is outside the %zd-byte buffer", start, end, view.len);
        return NULL;
    }
    push_packet(self, (const unsigned char *)view.buf + start, end - start);
    PyBuffer_Release(&view);
    Py_INCREF(Py_None);
    return end_call(self, Py_None);
}

static PyObject *Core_feed_interleaved(Core *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "feed_interleaved(data, pos, channel, out) takes 4 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    long channel = PyLong_AsLong(args[2]);
    if (channel == -1 && PyErr_Occurred()) return NULL;
    if (begin_call(self, args[3]) == NULL) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (pos < 0 || pos > view.len) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "position %zd is outside the %zd-byte buffer", pos, view.len);
        return NULL;
    }
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    long long frames = 0;
    /* A run of complete '$' frames on our channel; anything else is the RTSP parser's to handle. */
    while (pos + 4 <= n && b[pos] == 0x24 && b[pos + 1] == channel && !self->failed) {
        Py_ssize_t length = be16(b + pos + 2);
        if (pos + 4 + length > n) break;
        push_packet(self, b + pos + 4, length);
        pos += 4 + length;
        frames++;
    }
    PyBuffer_Release(&view);
    self->frames += frames;
    return end_call(self, Py_BuildValue("(nL)", pos, frames));
}

static PyObject *Core_get_last_error(Core *self, void *closure) { return PyUnicode_FromString(self->last_error); }

static PyObject *Core_get_waiting_keyframe(Core *self, void *closure) { return PyBool_FromLong(self->waiting_keyframe); }

static PyMethodDef Core_methods[] = {
    {"push", (PyCFunction)(void (*)(void))Core_push, METH_FASTCALL,
     "push(data, start, end, out): feed the RTP packet data[start:end]; completed units are appended to out."},
    {"feed_interleaved", (PyCFunction)(void (*)(void))Core_feed_interleaved, METH_FASTCALL,
     "feed_interleaved(data, pos, channel, out) -> (pos, frames): depacketize the run of complete '$' frames of "
     "channel at data[pos:]; stops before anything else. Units are appended to out."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Core_members[] = {
    {"packets", T_LONGLONG, offsetof(Core, packets), READONLY, "RTP packets accepted"},
    {"corrupt", T_LONGLONG, offsetof(Core, corrupt), READONLY, "broken units dropped plus unparseable packets"},
    {"lost", T_LONGLONG, offsetof(Core, lost), READONLY, "packets missing according to sequence numbers"},
    {"late", T_LONGLONG, offsetof(Core, late), READONLY, "late or duplicate packets ignored"},
    {"ignored", T_LONGLONG, offsetof(Core, ignored), READONLY, "packets of another payload type"},
    {"skipped", T_LONGLONG, offsetof(Core, skipped), READONLY, "intact units dropped while waiting for a keyframe"},
    {"units", T_LONGLONG, offsetof(Core, units), READONLY, "access units emitted"},
    {"frames", T_LONGLONG, offsetof(Core, frames), READONLY, "interleaved frames taken by feed_interleaved"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Core_getset[] = {
    {"last_error", (getter)Core_get_last_error, NULL, "what the last damage was", NULL},
    {"waiting_keyframe", (getter)Core_get_waiting_keyframe, NULL, "nothing is emitted until a keyframe", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vigil.protocols.rtp._fastdepack.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compiled H.264/H.265 RTP depacketizer core.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_members = Core_members,
    .tp_getset = Core_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastdepack", "Compiled core of the RTP depacketizer.", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastdepack(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
