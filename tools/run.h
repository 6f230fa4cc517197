/*
 * run.h - `deeplab segment` and `deeplab rmbg`, in three parts:
 *
 *   run_options.c  the command line: options into a run_opts, the help texts
 *   run_jobs.c     what happens to each photo: the pipeline's callbacks (load the model, make
 *                  and write the cut-out or class map) and the progress report
 *   cmd_run.c      the command: inputs and outputs checked, the pipeline run, the summary
 *
 * Listing the inputs and naming the outputs is inputs.c's; the image work is the library's
 * (dl_cutout_make, dl_labels_from_logits).
 */
#ifndef DL_RUN_H
#define DL_RUN_H

#include "pipeline.h"

typedef struct run_opts {
    const char *cmd;
    int rmbg;
    const char *weights, *output, *save_logits;
    const char **inputs;
    int ninputs;
    int size, threads, verbose, reference;
    dl_device device;
    dl_precision precision; /* --precision (fp32 unless given: README, Speed, says why) */
    /* many photos */
    int overwrite, batch, io_threads;
    dl_file_format ext; /* the output type with -o DIR or -o - (PNG unless --ext jpg) */
    dl_cutout_request req; /* rmbg: the cut-out, option by option (dl_cutout_request_set) */
    /* sharded runs: this run takes the photos of shard `shard` of `shards` (0 <= shard < shards;
     * shards 0 = not sharded), by input_shard_of (inputs.h); shard_from: the variable that
     * --shard env/N read it from, else NULL */
    int shard, shards;
    const char *shard_from;
    const char *manifest; /* --manifest FILE: one JSON line per photo, appended as each ends */
} run_opts;

/* run_options.c: parses argv (argv[0] is the command's name) into o, with the defaults; 0 or
 * the exit status after reporting. o->inputs is malloc'ed, o->req is freed by the caller. */
int run_parse_options(run_opts *o, int argc, char **argv);
extern const char *const run_segment_help, *const run_rmbg_help;
int run_list_classes(void); /* rmbg --list-classes */

/* run_jobs.c: the state the callbacks share. */
typedef struct run_ctx {
    run_opts *o;
    int folder;              /* -o DIR */
    dl_model *model;         /* loaded by run_load_model, or given (bench) */
    int own_model;
    dl_refiner **refiners;   /* one per encoder, made on first use */
    dl_file_format format;   /* of the outputs */
    int tty;                 /* stderr is a terminal: a progress bar */
    int bar_shown;
    int manifest_fd;         /* --manifest, opened for appending; -1 without */
    int manifest_failed;     /* errno of its first failed write (reported once) */
} run_ctx;

/* The pipe_config callbacks (pipeline.h), ctx a run_ctx. */
int run_load_model(void *ctx, dl_model **model);
dl_status run_rmbg_finish(void *ctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
                          const float *logits, int C, int h, int w);
dl_status run_segment_finish(void *ctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
                             const float *logits, int C, int h, int w);
void run_progress(void *ctx, const pipe_job *job, int done, int failed, int total, double elapsed);
/* One line of the manifest for a job (status "written", "failed" or "skipped"); nothing
 * without --manifest. The progress callback writes the jobs that ran, cmd_run.c the skipped. */
void run_manifest_line(run_ctx *c, const pipe_job *job, const char *status);

#endif
