/* Compiled PS demuxer (see _psdemux.c) as the PS/RTP receiver core (_fastps.c) drives it. */
#ifndef VIGIL_PSDEMUX_H
#define VIGIL_PSDEMUX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
} PsBuf;

/* demux.py's _Unwrapper. */
typedef struct {
    int have; /* last_raw is not None */
    int64_t last_raw, last, interval;
    long long discontinuities;
} PsClock;

/* Why the last feed must raise PsError in Python (reported once, then reset). */
enum { PS_OK = 0, PS_NOT_PS = 1, PS_ENDED = 2 };

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_frame_size, max_garbage;

    /* System layer (PsDemuxer). */
    PsBuf buf;
    int ended;
    Py_ssize_t video_left; /* PS_NO_PES outside a video PES, PS_UNBOUNDED in a length-0 one, else bytes */
    Py_ssize_t garbage_run;
    int garbage_dirty;
    int status; /* PS_*, pending report */
    int video_id;  /* -1: not chosen */
    int stream_types[256]; /* -1: not in the PSM */
    PsClock audio_clocks[32];
    double wallclock, mono;

    /* Video layer (_VideoLayer). */
    int codec; /* 0 unknown, 1 H.264, 2 H.265 */
    int codec_from_psm;
    PsBuf tail;
    int in_nal;
    Py_ssize_t scan_from;
    PsBuf pic; /* the picture in progress, NAL units with 4-byte length prefixes */
    Py_ssize_t nals;
    int vcl, key, broken;
    int have_pts;
    int64_t pts, dts; /* raw 33-bit */
    double pic_wallclock, pic_mono;
    int waiting_keyframe;
    PyObject *params[3]; /* bytes or NULL, by the codec's parameter set kinds */
    int params_changed;
    int have_track;
    PsClock clock;
    int64_t last_dts;

    long long packs, pes_packets, units, audio_frames, corrupt, skipped_units, skipped_bytes, resyncs, oversize,
        bad_pes, ignored_pes, unidentified_nals;
    char last_error[256];

    PyObject *out; /* list receiving events during one call (borrowed) */
    int failed;    /* a Python error is set (out of memory) */
} PsDemux;

extern PyTypeObject PsDemuxType;

/* PsDemuxer.receive_data / end_of_frame / data_lost on the compiled demuxer; events go to d->out. */
void psdemux_feed(PsDemux *d, const unsigned char *data, Py_ssize_t n, double wallclock, double mono);
void psdemux_end_of_frame(PsDemux *d);
void psdemux_data_lost(PsDemux *d, const char *reason);
Py_ssize_t psdemux_find_start_code(const unsigned char *b, Py_ssize_t n, Py_ssize_t start);

#endif
