/* Compiled MPEG-2 program stream demuxer: demux.py's PsDemuxer (the reference) rule for rule, in C.
 *
 * Why: the PS/RTP receiver core (_fastps.c) already does the per-packet work in C, but each picture then
 * cost ~10 Python calls in the demuxer (pack header, PES, PSM, NAL splitting, access-unit assembly),
 * which kept the GB receive path well above the RTSP path's CPU. With this core the receiver feeds the
 * demuxer in C and Python runs once per access unit: it builds the AccessUnit and, when the parameter
 * sets changed, the VideoTrack — the pattern of _fastdepack.c.
 *
 * Every decision, counter and damage message follows demux.py (read its module docstring for the rules);
 * tests/protocols/ps/test_fast_ps_demux.py holds the two to the same events and counters with hypothesis,
 * random cuts, fuzzed bytes and the real Hikvision capture. Sans-I/O: bytes in, tuples out.
 *
 * Events leave as tuples appended to the caller's list:
 *   video: (data: bytes, pts: int, dts: int, keyframe: bool, parameter_sets: tuple | None, wallclock, mono)
 *          parameter_sets is the codec's (SPS, PPS) or (VPS, SPS, PPS) when they changed since the last
 *          unit (the caller builds a new track; 2 entries: H.264, 3: H.265), else None;
 *   audio: (stream_id: int, stream_type: int | None, pts: int | None, data: bytes, wallclock: float).
 * PsError is not raised here: the call reports PS_NOT_PS / PS_ENDED and Python raises.
 */
#include "_psdemux.h"

#include <stdarg.h>
#include <string.h>
#include <structmember.h>

#define PS_NO_PES (-2)
#define PS_UNBOUNDED (-1)
#define PROGRAM_END 0xB9
#define PACK_HEADER 0xBA
#define SYSTEM_HEADER 0xBB
#define PROGRAM_STREAM_MAP 0xBC
#define PACK_HEADER_LENGTH 14
#define MPEG1_PACK_HEADER_LENGTH 12
#define MAX_PES_HEADER (6 + 3 + 255)
#define TS_MODULUS ((int64_t)1 << 33)
#define TS_HALF ((int64_t)1 << 32)
#define VIDEO_CLOCK_RATE 90000
#define MAX_TIMESTAMP_JUMP (10 * VIDEO_CLOCK_RATE)
#define DEFAULT_FRAME_INTERVAL (VIDEO_CLOCK_RATE / 25)
#define CODEC_H264 1
#define CODEC_H265 2

static const int PARAM_KINDS[3][3] = {{0, 0, 0}, {7, 8, -1}, {32, 33, 34}};
static const int PARAM_COUNT[3] = {0, 2, 3};

/* -- small helpers -- */

static int buf_append(PsDemux *d, PsBuf *b, const unsigned char *data, Py_ssize_t n) {
    if (n <= 0) return 0;
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = PyMem_Realloc(b->p, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            d->failed = 1;
            return -1;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, (size_t)n);
    b->len += n;
    return 0;
}

static void buf_consume(PsBuf *b, Py_ssize_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, (size_t)(b->len - n));
    b->len -= n;
}

static void buf_free(PsBuf *b) {
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* The bytes are all stuffing (0x00 / 0xFF): bytes.strip(b"\x00\xff") would leave nothing. */
static int all_stuffing(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] != 0x00 && p[i] != 0xFF) return 0;
    return 1;
}

static int all_zero(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void set_error(PsDemux *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(d->last_error, sizeof(d->last_error), fmt, ap);
    va_end(ap);
}

static void emit(PsDemux *d, PyObject *event) {
    if (event == NULL) {
        d->failed = 1;
        return;
    }
    if (d->out == NULL || PyList_Append(d->out, event) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "demuxer event with no list to take it");
        d->failed = 1;
    }
    Py_DECREF(event);
}

Py_ssize_t psdemux_find_start_code(const unsigned char *b, Py_ssize_t n, Py_ssize_t start) {
    Py_ssize_t at = start + 2;
    while (at < n) {
        const unsigned char *one = memchr(b + at, 1, (size_t)(n - at));
        if (one == NULL) break;
        Py_ssize_t q = one - b;
        if (b[q - 1] == 0 && b[q - 2] == 0) return q - 2;
        at = q + 1;
    }
    return -1;
}

static int64_t decode_timestamp(const unsigned char *p) {
    return ((int64_t)((p[0] >> 1) & 0x07) << 30) | ((int64_t)p[1] << 22) | ((int64_t)(p[2] >> 1) << 15) |
           ((int64_t)p[3] << 7) | (p[4] >> 1);
}

static inline int64_t mod33(int64_t v) { return v & (TS_MODULUS - 1); }
static inline int64_t signed33(int64_t v) { return mod33(v + TS_HALF) - TS_HALF; }

static int64_t clock_unwrap(PsClock *c, int64_t raw) {
    if (!c->have) {
        c->last = raw;
    } else {
        int64_t delta = signed33(raw - c->last_raw);
        if (delta > 0 && delta <= MAX_TIMESTAMP_JUMP) {
            c->last += delta;
            c->interval = delta;
        } else {
            c->discontinuities++;
            c->last += c->interval;
        }
    }
    c->have = 1;
    c->last_raw = raw;
    return c->last;
}

static int64_t clock_extrapolate(PsClock *c) {
    if (!c->have) {
        c->have = 1;
        c->last_raw = 0;
        c->last = 0;
        return 0;
    }
    c->last += c->interval;
    c->last_raw = mod33(c->last_raw + c->interval);
    return c->last;
}

static void clock_reset(PsClock *c) {
    c->have = 0;
    c->last_raw = c->last = 0;
    c->interval = DEFAULT_FRAME_INTERVAL;
    c->discontinuities = 0;
}

/* -- video layer -- */

static void reset_picture(PsDemux *d) {
    d->pic.len = 0;
    d->nals = 0;
    d->vcl = d->key = d->broken = 0;
    d->have_pts = 0;
}

static void advance_clock(PsDemux *d, int64_t *pts_out, int64_t *dts_out) {
    int64_t pts, dts;
    if (!d->have_pts) {
        dts = clock_extrapolate(&d->clock);
        pts = dts;
    } else {
        dts = clock_unwrap(&d->clock, d->dts);
        pts = dts + signed33(d->pts - d->dts);
    }
    if (dts <= d->last_dts) {
        dts = d->last_dts + 1;
        if (pts < dts) pts = dts;
    }
    d->last_dts = dts;
    *pts_out = pts;
    *dts_out = dts;
}

static void emit_unit(PsDemux *d) {
    int count = PARAM_COUNT[d->codec];
    if (d->waiting_keyframe) {
        int missing = 0;
        for (int i = 0; i < count; i++) missing |= d->params[i] == NULL;
        if (!d->key || missing) {
            d->skipped_units++;
            int64_t pts, dts;
            advance_clock(d, &pts, &dts);
            return;
        }
        d->waiting_keyframe = 0;
    }
    for (int i = 0; i < count; i++)
        if (d->params[i] == NULL) { /* cannot happen: waiting_keyframe stays set until all are present */
            d->skipped_units++;
            int64_t pts, dts;
            advance_clock(d, &pts, &dts);
            return;
        }
    PyObject *params = Py_None;
    Py_INCREF(Py_None);
    if (d->params_changed || !d->have_track) {
        d->params_changed = 0;
        d->have_track = 1;
        Py_DECREF(Py_None);
        params = PyTuple_New(count);
        if (params == NULL) {
            d->failed = 1;
            return;
        }
        for (int i = 0; i < count; i++) {
            Py_INCREF(d->params[i]);
            PyTuple_SET_ITEM(params, i, d->params[i]);
        }
    }
    int64_t pts, dts;
    advance_clock(d, &pts, &dts);
    PyObject *data = PyBytes_FromStringAndSize((const char *)d->pic.p, d->pic.len);
    if (data == NULL) {
        Py_DECREF(params);
        d->failed = 1;
        return;
    }
    d->units++;
    emit(d, Py_BuildValue("(NLLNNdd)", data, (long long)pts, (long long)dts, PyBool_FromLong(d->key), params,
                          d->pic_wallclock, d->pic_mono));
}

/* _VideoLayer._finish. */
static void finish(PsDemux *d) {
    if (d->broken) {
        d->corrupt++;
        d->waiting_keyframe = 1;
    } else if (!d->vcl) {
        return;
    } else {
        emit_unit(d);
    }
    reset_picture(d);
}

static int codec_sniff(const unsigned char *nal, Py_ssize_t n) {
    int layer0 = n >= 2 && !(nal[0] & 0x81) && (nal[1] & 0x07) && !(nal[1] & 0xF8);
    if (layer0) {
        int kind = nal[0] >> 1;
        if (kind >= 32 && kind <= 35) return CODEC_H265;
    }
    if (n >= 1 && !(nal[0] & 0x80) && ((nal[0] & 0x1F) == 7 || (nal[0] & 0x1F) == 9)) return CODEC_H264;
    return 0;
}

static int h264_before_vcl(int kind) { return (kind >= 6 && kind <= 9) || (kind >= 14 && kind <= 18); }
static int h265_before_vcl(int kind) {
    return (kind >= 32 && kind <= 35) || kind == 39 || (kind >= 41 && kind <= 44) || (kind >= 48 && kind <= 55);
}

/* _VideoLayer._nal: one NAL unit (after its start code). */
static void nal_unit(PsDemux *d, const unsigned char *nal, Py_ssize_t n) {
    while (n > 0 && nal[n - 1] == 0) n--; /* trailing_zero_8bits and the first zero of a 4-byte start code */
    if (n == 0) return;
    if (d->codec == 0) {
        int codec = codec_sniff(nal, n);
        if (codec == 0) {
            d->unidentified_nals++;
            return;
        }
        d->codec = codec;
    }
    if (nal[0] & 0x80) {
        set_error(d, "NAL unit with forbidden_zero_bit set");
        d->broken = 1;
        return;
    }
    int kind, vcl, key;
    if (d->codec == CODEC_H264) {
        kind = nal[0] & 0x1F;
        vcl = kind >= 1 && kind <= 5;
        int first_slice = vcl && n > 1 && (nal[1] & 0x80);
        if (d->vcl && (first_slice || h264_before_vcl(kind))) finish(d);
        if (kind == 9) return;
        key = kind == 5;
    } else {
        if (n < 2) {
            d->broken = 1;
            return;
        }
        kind = (nal[0] >> 1) & 0x3F;
        vcl = kind < 32;
        int first_slice = vcl && n > 2 && (nal[2] & 0x80);
        if (d->vcl && (first_slice || h265_before_vcl(kind))) finish(d);
        if (kind == 35) return;
        key = kind >= 16 && kind <= 23;
    }
    if (d->failed) return;
    if (d->pic.len + 4 + n > d->max_frame_size) {
        d->oversize++;
        set_error(d, "picture larger than %zd bytes", d->max_frame_size);
        d->broken = 1;
        return;
    }
    if (d->nals == 0) {
        d->pic_wallclock = d->wallclock;
        d->pic_mono = d->mono;
    }
    unsigned char prefix[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                               (unsigned char)n};
    if (buf_append(d, &d->pic, prefix, 4) < 0 || buf_append(d, &d->pic, nal, n) < 0) return;
    d->nals++;
    if (vcl) {
        d->vcl = 1;
        d->key = d->key || key;
        return;
    }
    for (int i = 0; i < PARAM_COUNT[d->codec]; i++) {
        if (PARAM_KINDS[d->codec][i] != kind) continue;
        PyObject *old = d->params[i];
        if (old != NULL && PyBytes_GET_SIZE(old) == n && memcmp(PyBytes_AS_STRING(old), nal, (size_t)n) == 0) return;
        PyObject *value = PyBytes_FromStringAndSize((const char *)nal, n);
        if (value == NULL) {
            d->failed = 1;
            return;
        }
        Py_XSETREF(d->params[i], value);
        d->params_changed = 1;
        return;
    }
}

static void end_nal(PsDemux *d) {
    nal_unit(d, d->tail.p, d->tail.len);
    d->tail.len = 0;
    d->in_nal = 0;
    d->scan_from = 0;
}

static void video_end_of_frame(PsDemux *d) {
    if (d->in_nal) end_nal(d);
    finish(d);
}

static void clear_params(PsDemux *d) {
    for (int i = 0; i < 3; i++) Py_CLEAR(d->params[i]);
}

/* _VideoLayer.lose. */
static void video_lose(PsDemux *d, const char *reason) {
    if (d->nals || d->in_nal) d->broken = 1;
    d->tail.len = 0;
    d->in_nal = 0;
    d->scan_from = 0;
    d->waiting_keyframe = 1;
    if (reason != d->last_error) set_error(d, "%s", reason);
    if (d->broken) finish(d);
}

static void set_codec(PsDemux *d, int codec) {
    if (codec == d->codec) {
        d->codec_from_psm = 1;
        return;
    }
    if (d->codec != 0) {
        video_end_of_frame(d);
        reset_picture(d);
        clear_params(d);
        d->waiting_keyframe = 1;
    }
    d->codec = codec;
    d->codec_from_psm = 1;
}

static void pes_start(PsDemux *d, int has_pts, int64_t pts, int has_dts, int64_t dts) {
    if (!has_pts || (d->have_pts && pts == d->pts)) return;
    if (d->in_nal) end_nal(d);
    if (d->vcl) finish(d);
    d->have_pts = 1;
    d->pts = pts;
    d->dts = has_dts ? dts : pts;
}

/* _VideoLayer.payload: elementary stream bytes; NAL units complete as their successors' start codes arrive. */
static void video_payload(PsDemux *d, const unsigned char *data, Py_ssize_t n) {
    if (buf_append(d, &d->tail, data, n) < 0) return;
    PsBuf *tail = &d->tail;
    Py_ssize_t start = 0;
    for (;;) {
        Py_ssize_t hit = psdemux_find_start_code(tail->p, tail->len, d->scan_from);
        if (hit < 0) break;
        if (d->in_nal)
            nal_unit(d, tail->p + start, hit - start);
        else if (!all_zero(tail->p + start, hit - start))
            d->skipped_bytes += hit - start;
        d->in_nal = 1;
        start = hit + 3;
        d->scan_from = start;
    }
    if (start) buf_consume(tail, start);
    d->scan_from = tail->len > 2 ? tail->len - 2 : 0;
    /* Checked on the incomplete NAL alone so the outcome does not depend on how input was cut. */
    if (tail->len > d->max_frame_size) {
        d->oversize++;
        set_error(d, "NAL unit larger than %zd bytes", d->max_frame_size);
        video_lose(d, d->last_error);
    }
}

/* -- system layer -- */

static int is_video_stream(int id) { return id >= 0xE0 && id <= 0xEF; }
static int is_audio_stream(int id) { return id >= 0xC0 && id <= 0xDF; }
static int is_resync_id(int id) { return id == PACK_HEADER || id == SYSTEM_HEADER || id == PROGRAM_STREAM_MAP || is_video_stream(id); }
static int has_no_pes_header(int id) {
    return id == 0xBC || id == 0xBE || id == 0xBF || id == 0xF0 || id == 0xF1 || id == 0xF2 || id == 0xF8 || id == 0xFF;
}
static int codec_of_stream_type(int type) { return type == 0x1B ? CODEC_H264 : type == 0x24 ? CODEC_H265 : 0; }

/* PsDemuxer._skip_garbage: the next resync start code at or after pos (-1 when none yet); skipped bytes counted. */
static Py_ssize_t skip_garbage(PsDemux *d, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) {
    Py_ssize_t search = pos, found = -1;
    Py_ssize_t stuffing_end = pos; /* buf[pos:stuffing_end] is all stuffing */
    while (stuffing_end < n && (buf[stuffing_end] == 0x00 || buf[stuffing_end] == 0xFF)) stuffing_end++;
    for (;;) {
        Py_ssize_t hit = psdemux_find_start_code(buf, n, search);
        if (hit < 0 || hit + 3 >= n) break;
        int id = buf[hit + 3];
        if (is_resync_id(id)) {
            found = hit;
            break;
        }
        /* After mere stuffing (zeros before a start code) any packet may follow: there is nothing to resync. */
        if (id >= PROGRAM_END && !d->garbage_dirty && stuffing_end >= hit) {
            found = hit;
            break;
        }
        search = hit + 1;
    }
    Py_ssize_t stop = found >= 0 ? found : (n - 3 > pos ? n - 3 : pos);
    if (stop > pos) {
        if (stuffing_end < stop) d->garbage_dirty = 1;
        d->garbage_run += stop - pos;
        if (d->garbage_run >= d->max_garbage) {
            d->status = PS_NOT_PS;
            d->skipped_bytes += d->garbage_run;
            d->garbage_run = 0;
        }
    }
    return found;
}

static void end_garbage(PsDemux *d) {
    /* Garbage between whole packets is vendor junk or a cut-off start: the picture in progress is kept. */
    if (d->garbage_dirty) {
        d->skipped_bytes += d->garbage_run;
        d->resyncs++;
        set_error(d, "%zd bytes of garbage between packets", d->garbage_run);
    }
    d->garbage_run = 0;
    d->garbage_dirty = 0;
}

static Py_ssize_t pack_header(PsDemux *d, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) {
    Py_ssize_t size;
    if (n - pos < 5) return 0;
    if (buf[pos + 4] >> 4 == 0x2) { /* MPEG-1 pack */
        size = MPEG1_PACK_HEADER_LENGTH;
    } else { /* MPEG-2, marker bits or not */
        if (n - pos < PACK_HEADER_LENGTH) return 0;
        size = PACK_HEADER_LENGTH + (buf[pos + 13] & 0x07);
    }
    if (n - pos < size) return 0;
    d->packs++;
    return size;
}

typedef struct {
    Py_ssize_t start;
    int has_pts, has_dts;
    int64_t pts, dts;
} PesHeader;

/* PsDemuxer._pes_header: 0 if malformed or cut off before end. */
static int pes_header(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, PesHeader *h) {
    Py_ssize_t p = pos + 6;
    h->has_pts = h->has_dts = 0;
    h->pts = h->dts = 0;
    if (p < end && buf[p] >> 6 == 0x2) { /* MPEG-2 PES header */
        if (p + 3 > end) return 0;
        int flags = buf[p + 1] >> 6;
        h->start = p + 3 + buf[p + 2];
        if (h->start > end) return 0;
        if (flags >= 2 && buf[p + 2] >= 5) {
            h->has_pts = 1;
            h->pts = decode_timestamp(buf + p + 3);
            if (flags == 3 && buf[p + 2] >= 10) {
                h->has_dts = 1;
                h->dts = decode_timestamp(buf + p + 8);
            }
        }
        return 1;
    }
    /* MPEG-1 PES header: up to 16 stuffing bytes, optional STD buffer field, then timestamps. */
    Py_ssize_t limit = end < p + 16 ? end : p + 16;
    while (p < limit && buf[p] == 0xFF) p++;
    if (p < end && buf[p] >> 6 == 0x1) p += 2;
    if (p >= end) return 0;
    int marker = buf[p] >> 4;
    if (marker == 0x2 && p + 5 <= end) {
        h->start = p + 5;
        h->has_pts = 1;
        h->pts = decode_timestamp(buf + p);
        return 1;
    }
    if (marker == 0x3 && p + 10 <= end) {
        h->start = p + 10;
        h->has_pts = h->has_dts = 1;
        h->pts = decode_timestamp(buf + p);
        h->dts = decode_timestamp(buf + p + 5);
        return 1;
    }
    if (buf[p] == 0x0F) {
        h->start = p + 1;
        return 1;
    }
    return 0;
}

/* PsDemuxer._psm over parse_psm (headers.py): lenient, CRC unchecked, first entry of an id wins. */
static void psm(PsDemux *d, const unsigned char *packet, Py_ssize_t size) {
    if (size < 16) {
        set_error(d, "program stream map of %zd bytes is shorter than its 16-byte minimum", size);
        return;
    }
    Py_ssize_t end = size; /* 6 + the packet's own length */
    unsigned info_length = ((unsigned)packet[8] << 8) | packet[9];
    Py_ssize_t pos = 10 + (Py_ssize_t)info_length;
    if (pos + 2 > end) {
        set_error(d, "program_stream_info_length %u runs past the map", info_length);
        return;
    }
    Py_ssize_t map_end = pos + 2 + (Py_ssize_t)(((unsigned)packet[pos] << 8) | packet[pos + 1]);
    if (map_end > end) map_end = end;
    pos += 2;
    int types[256];
    int first_video = -1;
    for (int i = 0; i < 256; i++) types[i] = -1;
    while (pos + 4 <= map_end) {
        int type = packet[pos], id = packet[pos + 1];
        if (types[id] < 0) {
            types[id] = type;
            if (first_video < 0 && is_video_stream(id) && codec_of_stream_type(type)) first_video = id;
        }
        pos += 4 + (Py_ssize_t)(((unsigned)packet[pos + 2] << 8) | packet[pos + 3]);
    }
    memcpy(d->stream_types, types, sizeof(types));
    if (d->video_id < 0) d->video_id = first_video;
    int codec = d->video_id >= 0 ? codec_of_stream_type(d->stream_types[d->video_id]) : 0;
    if (codec) set_codec(d, codec);
}

static void select_video(PsDemux *d, int stream_id) {
    if (d->video_id >= 0) return;
    d->video_id = stream_id;
    int codec = codec_of_stream_type(d->stream_types[stream_id]);
    if (codec) set_codec(d, codec);
}

static void audio(PsDemux *d, int stream_id, const PesHeader *h, const unsigned char *data, Py_ssize_t n) {
    PsClock *clock = &d->audio_clocks[stream_id - 0xC0];
    PsClock *video = &d->clock;
    PyObject *pts = Py_None;
    if (h->has_pts) {
        int64_t out;
        if (video->have) /* on the video's unwrapped timeline, so audio stays in sync */
            out = video->last + signed33(h->pts - video->last_raw);
        else
            out = !clock->have ? h->pts : clock->last + signed33(h->pts - clock->last_raw);
        clock->have = 1;
        clock->last_raw = h->pts;
        clock->last = out;
        pts = PyLong_FromLongLong(out);
        if (pts == NULL) {
            d->failed = 1;
            return;
        }
    } else {
        Py_INCREF(pts);
    }
    PyObject *type = Py_None;
    if (d->stream_types[stream_id] >= 0) {
        type = PyLong_FromLong(d->stream_types[stream_id]);
        if (type == NULL) {
            Py_DECREF(pts);
            d->failed = 1;
            return;
        }
    } else {
        Py_INCREF(type);
    }
    d->audio_frames++;
    emit(d, Py_BuildValue("(iNNy#d)", stream_id, type, pts, (const char *)data, n, d->wallclock));
}

static Py_ssize_t video_start(PsDemux *d, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, int stream_id,
                              Py_ssize_t length) {
    Py_ssize_t end = length == 0 ? n : (n < pos + 6 + length ? n : pos + 6 + length);
    PesHeader h;
    if (!pes_header(buf, pos, end, &h)) {
        int whole = length && n >= pos + 6 + length;
        if (!whole && n - pos < MAX_PES_HEADER) return 0; /* the header may still be arriving */
        d->pes_packets++;
        d->bad_pes++;
        char reason[64];
        snprintf(reason, sizeof(reason), "malformed PES header for stream 0x%02X", stream_id);
        video_lose(d, reason);
        return whole ? 6 + length : 6;
    }
    d->pes_packets++;
    select_video(d, stream_id);
    pes_start(d, h.has_pts, h.pts, h.has_dts, h.dts);
    d->video_left = length == 0 ? PS_UNBOUNDED : pos + 6 + length - h.start;
    return h.start - pos;
}

/* PsDemuxer._packet: a length-prefixed packet at pos; bytes consumed, 0 when more are needed. */
static Py_ssize_t packet(PsDemux *d, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, int stream_id) {
    if (n - pos < 6) return 0;
    Py_ssize_t length = ((Py_ssize_t)buf[pos + 4] << 8) | buf[pos + 5];
    if (is_video_stream(stream_id) && (d->video_id < 0 || d->video_id == stream_id))
        return video_start(d, buf, pos, n, stream_id, length);
    Py_ssize_t size = 6 + length;
    if (n - pos < size) return 0;
    if (stream_id == PROGRAM_STREAM_MAP) {
        psm(d, buf + pos, size);
    } else if (stream_id == SYSTEM_HEADER || has_no_pes_header(stream_id)) {
        if (stream_id != SYSTEM_HEADER) d->ignored_pes++;
    } else if (is_audio_stream(stream_id)) {
        d->pes_packets++;
        PesHeader h;
        if (!pes_header(buf, pos, pos + size, &h))
            d->bad_pes++;
        else
            audio(d, stream_id, &h, buf + h.start, pos + size - h.start);
    } else {
        d->pes_packets++;
        d->ignored_pes++;
    }
    return size;
}

/* PsDemuxer._video_payload: the rest of a bounded PES, or up to the next system start code. */
static Py_ssize_t video_pes_payload(PsDemux *d, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) {
    Py_ssize_t left = d->video_left, stop;
    if (left >= 0) {
        stop = n < pos + left ? n : pos + left;
        if (stop > pos) video_payload(d, buf + pos, stop - pos);
        left -= stop - pos;
        d->video_left = left ? left : PS_NO_PES;
        return stop;
    }
    Py_ssize_t search = pos;
    for (;;) {
        Py_ssize_t hit = psdemux_find_start_code(buf, n, search);
        if (hit < 0 || hit + 3 >= n) { /* hold back a start code prefix cut at the end of the input */
            stop = n - 3 > pos ? n - 3 : pos;
            break;
        }
        if (buf[hit + 3] >= PROGRAM_END) {
            stop = hit;
            d->video_left = PS_NO_PES;
            break;
        }
        search = hit + 1;
    }
    if (stop > pos) video_payload(d, buf + pos, stop - pos);
    return stop;
}

/* PsDemuxer._parse over buf[0:n]; the bytes consumed. */
static Py_ssize_t parse(PsDemux *d, const unsigned char *buf, Py_ssize_t n) {
    Py_ssize_t pos = 0;
    while (!d->failed) {
        if (d->video_left != PS_NO_PES) {
            pos = video_pes_payload(d, buf, pos, n);
            if (d->video_left != PS_NO_PES) break;
        }
        if (n - pos < 4) break;
        if (buf[pos] || buf[pos + 1] || buf[pos + 2] != 1 || buf[pos + 3] < PROGRAM_END) {
            Py_ssize_t found = skip_garbage(d, buf, pos, n);
            if (found < 0) {
                pos = n - 3 > pos ? n - 3 : pos;
                break;
            }
            pos = found;
            continue;
        }
        if (d->garbage_run) end_garbage(d);
        int id = buf[pos + 3];
        Py_ssize_t used;
        if (id == PACK_HEADER)
            used = pack_header(d, buf, pos, n);
        else if (id == PROGRAM_END)
            used = 4;
        else
            used = packet(d, buf, pos, n, id);
        if (used == 0) break;
        pos += used;
    }
    return pos;
}

void psdemux_feed(PsDemux *d, const unsigned char *data, Py_ssize_t n, double wallclock, double mono) {
    if (d->ended) {
        d->status = PS_ENDED;
        return;
    }
    d->wallclock = wallclock;
    d->mono = mono;
    if (d->buf.len == 0) {
        /* Nothing held back: parse the input where it is and keep only what is left over. */
        Py_ssize_t used = parse(d, data, n);
        if (!d->failed) buf_append(d, &d->buf, data + used, n - used);
        return;
    }
    if (buf_append(d, &d->buf, data, n) < 0) return;
    Py_ssize_t used = parse(d, d->buf.p, d->buf.len);
    buf_consume(&d->buf, used);
}

void psdemux_end_of_frame(PsDemux *d) {
    if (d->video_left == PS_UNBOUNDED) {
        video_payload(d, d->buf.p, d->buf.len);
        d->buf.len = 0;
        d->video_left = PS_NO_PES;
    }
    if (d->video_left == PS_NO_PES && all_stuffing(d->buf.p, d->buf.len)) video_end_of_frame(d);
}

void psdemux_data_lost(PsDemux *d, const char *reason) {
    d->buf.len = 0;
    d->video_left = PS_NO_PES;
    d->garbage_run = 0;
    d->garbage_dirty = 0;
    video_lose(d, reason);
}

static void end_of_stream(PsDemux *d) {
    if (d->ended) return;
    if (d->video_left == PS_UNBOUNDED) {
        video_payload(d, d->buf.p, d->buf.len);
        d->buf.len = 0;
        d->video_left = PS_NO_PES;
    }
    if (d->video_left != PS_NO_PES || (d->buf.len >= 4 && is_video_stream(d->buf.p[3]))) {
        char reason[96];
        snprintf(reason, sizeof(reason), "stream ends inside a video packet (%zd bytes left)", d->buf.len);
        video_lose(d, reason);
    } else if (!all_stuffing(d->buf.p, d->buf.len) || d->garbage_dirty) {
        d->skipped_bytes += d->garbage_run + d->buf.len;
    }
    d->buf.len = 0;
    d->video_left = PS_NO_PES;
    video_end_of_frame(d);
    d->ended = 1;
}

/* -- the Python type -- */

static int Demux_init(PsDemux *d, PyObject *args, PyObject *kwds) {
    Py_ssize_t max_frame_size, max_garbage;
    if (!PyArg_ParseTuple(args, "nn", &max_frame_size, &max_garbage)) return -1;
    if (max_frame_size < 1024 || max_garbage < 65536) {
        PyErr_SetString(PyExc_ValueError, "max_frame_size must be >= 1024 and max_garbage >= 65536");
        return -1;
    }
    d->max_frame_size = max_frame_size;
    d->max_garbage = max_garbage;
    d->buf.len = d->tail.len = d->pic.len = 0;
    d->ended = 0;
    d->video_left = PS_NO_PES;
    d->garbage_run = 0;
    d->garbage_dirty = 0;
    d->status = PS_OK;
    d->video_id = -1;
    for (int i = 0; i < 256; i++) d->stream_types[i] = -1;
    for (int i = 0; i < 32; i++) clock_reset(&d->audio_clocks[i]);
    d->wallclock = d->mono = 0.0;
    d->codec = 0;
    d->codec_from_psm = 0;
    d->in_nal = 0;
    d->scan_from = 0;
    reset_picture(d);
    d->pic_wallclock = d->pic_mono = 0.0;
    d->waiting_keyframe = 1;
    clear_params(d);
    d->params_changed = 0;
    d->have_track = 0;
    clock_reset(&d->clock);
    d->last_dts = -1;
    d->packs = d->pes_packets = d->units = d->audio_frames = d->corrupt = d->skipped_units = 0;
    d->skipped_bytes = d->resyncs = d->oversize = d->bad_pes = d->ignored_pes = d->unidentified_nals = 0;
    d->last_error[0] = '\0';
    d->out = NULL;
    d->failed = 0;
    return 0;
}

static void Demux_dealloc(PsDemux *d) {
    buf_free(&d->buf);
    buf_free(&d->tail);
    buf_free(&d->pic);
    clear_params(d);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static int begin(PsDemux *d, PyObject *out) {
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "out must be a list");
        return -1;
    }
    if (d->max_frame_size == 0) {
        PyErr_SetString(PyExc_RuntimeError, "Demuxer not initialised");
        return -1;
    }
    d->out = out;
    d->failed = 0;
    return 0;
}

/* The pending PsError report (PS_*) as the call's result, or NULL with the Python error set. */
static PyObject *finish_call(PsDemux *d) {
    d->out = NULL;
    if (d->failed) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    int status = d->status;
    d->status = PS_OK;
    return PyLong_FromLong(status);
}

static PyObject *Demux_receive_data(PsDemux *d, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "receive_data(data, wallclock, mono, out) takes 4 arguments");
        return NULL;
    }
    double wall = PyFloat_AsDouble(args[1]);
    if (wall == -1.0 && PyErr_Occurred()) return NULL;
    double mono = PyFloat_AsDouble(args[2]);
    if (mono == -1.0 && PyErr_Occurred()) return NULL;
    if (begin(d, args[3]) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        d->out = NULL;
        return NULL;
    }
    psdemux_feed(d, view.buf, view.len, wall, mono);
    PyBuffer_Release(&view);
    return finish_call(d);
}

static PyObject *Demux_end_of_frame(PsDemux *d, PyObject *out) {
    if (begin(d, out) < 0) return NULL;
    psdemux_end_of_frame(d);
    return finish_call(d);
}

static PyObject *Demux_data_lost(PsDemux *d, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data_lost(reason: str, out) takes 2 arguments");
        return NULL;
    }
    const char *reason = PyUnicode_AsUTF8(args[0]);
    if (reason == NULL) return NULL;
    if (begin(d, args[1]) < 0) return NULL;
    psdemux_data_lost(d, reason);
    return finish_call(d);
}

static PyObject *Demux_end_of_stream(PsDemux *d, PyObject *out) {
    if (begin(d, out) < 0) return NULL;
    end_of_stream(d);
    return finish_call(d);
}

static PyObject *Demux_take_status(PsDemux *d, PyObject *unused) {
    int status = d->status;
    d->status = PS_OK;
    return PyLong_FromLong(status);
}

static PyObject *Demux_get_last_error(PsDemux *d, void *closure) {
    return PyUnicode_DecodeUTF8(d->last_error, (Py_ssize_t)strlen(d->last_error), "replace");
}
static PyObject *Demux_get_buffered(PsDemux *d, void *closure) {
    return PyLong_FromSsize_t(d->buf.len + d->tail.len + d->pic.len);
}
static PyObject *Demux_get_discontinuities(PsDemux *d, void *closure) {
    return PyLong_FromLongLong(d->clock.discontinuities);
}

static PyMethodDef Demux_methods[] = {
    {"receive_data", (PyCFunction)(void (*)(void))Demux_receive_data, METH_FASTCALL,
     "receive_data(data, wallclock, mono, out) -> status: PsDemuxer.receive_data; events appended to out."},
    {"end_of_frame", (PyCFunction)Demux_end_of_frame, METH_O, "end_of_frame(out) -> status"},
    {"data_lost", (PyCFunction)(void (*)(void))Demux_data_lost, METH_FASTCALL, "data_lost(reason, out) -> status"},
    {"end_of_stream", (PyCFunction)Demux_end_of_stream, METH_O, "end_of_stream(out) -> status"},
    {"take_status", (PyCFunction)Demux_take_status, METH_NOARGS,
     "take_status() -> status: the report of calls a Receiver made (0 none, 1 not a program stream, 2 ended)."},
    {NULL, NULL, 0, NULL},
};

#define COUNTER(name, doc) {#name, T_LONGLONG, offsetof(PsDemux, name), READONLY, doc}
static PyMemberDef Demux_members[] = {
    COUNTER(packs, "pack headers read"),
    COUNTER(pes_packets, "PES packets read"),
    COUNTER(units, "access units emitted"),
    COUNTER(audio_frames, "audio frames emitted"),
    COUNTER(corrupt, "damaged pictures dropped"),
    COUNTER(skipped_units, "intact pictures dropped while waiting for a keyframe"),
    COUNTER(skipped_bytes, "garbage bytes skipped"),
    COUNTER(resyncs, "start code alignment lost and regained"),
    COUNTER(oversize, "packets or pictures over a limit"),
    COUNTER(bad_pes, "malformed PES headers"),
    COUNTER(ignored_pes, "PES packets of streams not decoded"),
    COUNTER(unidentified_nals, "NAL units dropped before the codec was known"),
    {"codec", T_INT, offsetof(PsDemux, codec), READONLY, "0 unknown, 1 H.264, 2 H.265"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Demux_getset[] = {
    {"last_error", (getter)Demux_get_last_error, NULL, "what the last damage was", NULL},
    {"buffered", (getter)Demux_get_buffered, NULL, "bytes held inside", NULL},
    {"timestamp_discontinuities", (getter)Demux_get_discontinuities, NULL, "video timestamp discontinuities", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject PsDemuxType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vigil.protocols.ps._fastps.Demuxer",
    .tp_basicsize = sizeof(PsDemux),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compiled core of PsDemuxer (demux.py is the reference).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Demux_init,
    .tp_dealloc = (destructor)Demux_dealloc,
    .tp_methods = Demux_methods,
    .tp_members = Demux_members,
    .tp_getset = Demux_getset,
};
