/*
 * pipeline.h - many photos through one model, with decoding, the network and encoding
 * overlapped (used by segment, rmbg and bench --folder).
 *
 *     decoder threads          main thread                 encoder threads
 *     read + decode + resize   batch + dl_forward          finish(): cut-out, encode, write
 *          |                       ^      |                      ^
 *          +--> queue (bounded) ---+      +--> queue (bounded) --+
 *
 * Decoders take the jobs in order and push preprocessed photos; the main thread groups up to
 * `batch` photos of the same network size into one dl_forward call and pushes each photo with
 * its logits; encoders run the command's finish callback. The queues are bounded, so memory
 * stays at a few photos in flight whatever the number of jobs. A job that fails (unreadable
 * photo, failed forward pass or write) is reported and the others go on.
 */
#ifndef DL_PIPELINE_H
#define DL_PIPELINE_H

#include "deeplab.h"

#define PIPE_INFO_SIZE 1024

/* A job is small (a folder of a million photos lists a million of them): the texts of its report
 * live only while it is in flight. */
typedef struct pipe_job {
    const char *input;  /* a path, or "-" for standard input */
    char *output;       /* where finish() writes */
    dl_status status;   /* after the run: DL_OK, or why it failed ... */
    const char *error;  /* ... in one line (the failing thread's dl_last_error): set during the
                           progress callback, else NULL */
    char *info;         /* PIPE_INFO_SIZE bytes where finish() may leave lines for the progress
                           report (-v): set during finish() and the progress callback, else NULL */
    double seconds;     /* from taken by a decoder to written */
} pipe_job;

typedef struct pipe_config {
    int size;           /* network input: shorter side (0 = the photo's own size), as dl_preprocess */
    int batch;          /* photos per forward pass (>= 1; only photos of the same size share one) */
    int decoders, encoders; /* threads (>= 1 each) */
    int background_io;  /* run them at a lower priority (nice 10): on a CPU they then fill the gaps
                           the network's threads leave instead of taking turns with them */
    int64_t fit_pixels; /* > 0: photos larger than this are scaled down to it (dl_image_fit_pixels) */
    void *ctx;          /* passed to the callbacks */
    /* Gives the model (main thread; the caller keeps it and frees it), after the first photo is
     * decoded when there is only one job (so that a bad photo is reported before missing
     * weights, as for a single file). Returns 0 or an exit status after printing the error. */
    int (*load)(void *ctx, dl_model **model);
    /* Encoder thread `worker` (0 .. encoders - 1): makes and writes the output of one photo from
     * its logits (classes x h x w). Returns DL_OK or a status with dl_last_error set. */
    dl_status (*finish)(void *ctx, int worker, dl_model *model, pipe_job *job, const dl_image *photo,
                        const float *logits, int classes, int h, int w);
    /* Called for every job when it is done (written or failed), one call at a time. */
    void (*progress)(void *ctx, const pipe_job *job, int done, int failed, int total, double elapsed);
} pipe_config;

typedef struct pipe_stats {
    int done, failed;        /* jobs written, jobs failed */
    double seconds;          /* wall time from the first decode to the last write (model load excluded) */
    double forward_seconds;  /* sum of the dl_forward calls */
    int forwards;            /* dl_forward calls */
    double load_seconds;     /* the model's load */
    double decode_seconds;   /* summed over the decoder threads: read, decode, preprocess */
    double finish_seconds;   /* summed over the encoder threads: the finish callbacks */
} pipe_stats;

/* Runs every job. Returns 0 when all were written; the status of the first failed job (in job
 * order) when some failed; or the load callback's status (no job is then run). */
int pipe_run(const pipe_config *cfg, pipe_job *jobs, int njobs, pipe_stats *stats);

/* `deeplab rmbg ARGS` with a model already loaded (for bench --folder): the same code path, and
 * the run's statistics. cmd_run.c. */
int cmd_rmbg_with_model(int argc, char **argv, dl_model *model, pipe_stats *stats);

/* `deeplab bench --folder DIR` (cmd_bench_folder.c): pure inference against rmbg over the folder.
 * weights NULL: random ResNet-101 weights. io_threads 0: rmbg's default. */
int bench_folder(const char *folder, const char *weights, dl_device device, int threads, int size, int batch,
                 int runs, int warmup, int io_threads, int json);

#endif
