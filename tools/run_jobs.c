/*
 * run_jobs.c - what segment and rmbg do with each photo (run.h): the pipeline's callbacks, which
 * load the model, make and write the cut-out or the class map, and report progress.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "cuda_device.h"
#include "run.h"

int run_load_model(void *vctx, dl_model **model)
{
    run_ctx *c = vctx;
    run_opts *o = c->o;
    if (!c->model) {
        dl_options mo = {.device = o->device, .threads = o->threads, .reference = o->reference, .precision = o->precision};
        const double t0 = dl_now();
        int rc = cli_load_model(o->weights, &mo, &c->model);
        if (rc) return rc;
        c->own_model = 1;
        if (o->verbose) {
            const dl_model_info info = dl_model_info_of(c->model);
            fprintf(stderr, "model:    DeepLabV3-ResNet%d, %d classes, %.1f M parameters (%s), loaded in %.2f s\n",
                    info.depth, info.num_classes, (double)info.num_params / 1e6, info.dtype, dl_now() - t0);
        }
    }
    const dl_model_info info = dl_model_info_of(c->model);
    if (o->verbose) {
        static const char *const pn[] = {"fp32", "tf32", "fp16", "bf16"};
        if (info.device == DL_DEVICE_CUDA) fprintf(stderr, "device:   %s, %s\n", dl_cuda_label(), pn[info.precision & 3]);
        else fprintf(stderr, "device:   cpu (%s, %d threads)\n", info.path, info.threads);
    }
    if (dl_cutout_request_check_classes(&o->req, info.num_classes, "--classes") != DL_OK)
        return cli_usage(o->cmd, "%s", dl_last_error());
    *model = c->model;
    return 0;
}

/* Adds "   subject ... classes ..." to the job's report (-v). */
static void describe(pipe_job *job, const dl_cutout *cut, const dl_image *photo, int net_w, int net_h, int folder)
{
    char *s = job->info;
    size_t n = PIPE_INFO_SIZE, k = 0;
    k += (size_t)snprintf(s + k, n - k,
                          folder ? "  %s: %dx%d, network input %dx%d\n" : "image:    %s, %dx%d; network input %dx%d\n",
                          job->input, photo->w, photo->h, net_w, net_h);
    if (k < n && cut) {
        if (cut->box_w)
            k += (size_t)snprintf(s + k, n - k, "%ssubject:  x %d, y %d, %dx%d (pixels with alpha > 0)\n",
                                  folder ? "  " : "", cut->box_x, cut->box_y, cut->box_w, cut->box_h);
        else
            k += (size_t)snprintf(s + k, n - k, "%ssubject:  none (every pixel transparent)\n", folder ? "  " : "");
        if (k < n) k += (size_t)snprintf(s + k, n - k, "%sclasses: ", folder ? "  " : "");
        int order[256];
        const int m = dl_classes_by_share(cut->share, cut->num_classes, order);
        for (int i = 0; i < m && k < n; i++) {
            char name[32];
            dl_class_label(order[i], cut->num_classes, name, sizeof name);
            k += (size_t)snprintf(s + k, n - k, "%s%s %.1f%%", i ? ", " : " ", name, 100 * cut->share[order[i]]);
        }
        if (k < n) snprintf(s + k, n - k, "\n");
    }
}

dl_status run_rmbg_finish(void *vctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
                          const float *logits, int C, int h, int w)
{
    run_ctx *c = vctx;
    run_opts *o = c->o;
    dl_refiner **r = &c->refiners[worker];
    dl_status s;
    dl_cutout_options co = dl_cutout_request_options(&o->req);
    if (co.refine && !*r && (s = dl_refiner_create(dl_model_info_of(m).device, r)) != DL_OK) return s;
    co.stats = o->verbose;
    dl_cutout cut;
    if ((s = dl_cutout_make(photo, logits, C, h, w, &co, *r, &cut)) != DL_OK) {
        dl_error_prefix(strcmp(job->input, "-") ? job->input : "stdin");
        return s;
    }
    s = dl_cutout_write(job->output, &cut, c->format, o->req.jpeg_quality);
    if (s == DL_OK && o->verbose) describe(job, &cut, photo, w, h, c->folder);
    if (s == DL_OK && cut.missed_points) {
        const size_t k = strlen(job->info);
        snprintf(job->info + k, PIPE_INFO_SIZE - k,
                 "deeplab: rmbg: %s: warning: %d --keep-at point(s) on no object (alpha below 50%% there): "
                 "nothing kept for them\n", job->input, cut.missed_points);
    }
    dl_cutout_free(&cut);
    return s;
}

dl_status run_segment_finish(void *vctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
                             const float *logits, int C, int h, int w)
{
    run_ctx *c = vctx;
    (void)worker, (void)m;
    dl_status s = DL_OK;
    if (c->o->save_logits) { /* before the class map, so that a failure leaves neither */
        int64_t shape[4] = {1, C, h, w};
        s = dl_npy_write_f32(c->o->save_logits, logits, 4, shape);
    }
    uint8_t *labels = s == DL_OK ? malloc((size_t)photo->w * photo->h) : NULL;
    if (s == DL_OK && !labels) s = dl_fail(DL_ENOMEM, "out of memory for a %dx%d class map", photo->w, photo->h);
    if (s == DL_OK) s = dl_labels_from_logits(logits, C, h, w, labels, photo->w, photo->h);
    if (s == DL_OK) s = dl_png_write_indexed(job->output, labels, photo->w, photo->h, dl_voc_palette(), C);
    free(labels);
    if (s == DL_OK && c->o->verbose) describe(job, NULL, photo, w, h, c->folder);
    return s;
}

void run_manifest_line(run_ctx *c, const pipe_job *job, const char *status)
{
    if (c->manifest_fd < 0) return;
    /* room for two paths of 4096 bytes and the error; a longer (escaped) one is cut short */
    char line[12288] = "{\"input\":", when[32];
    json_string(line, 4600, job->input);
    strcat(line, ",\"output\":");
    json_string(line, 9200, job->output);
    const time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    size_t k = strlen(line);
    k += (size_t)snprintf(line + k, sizeof line - k, ",\"status\":\"%s\",\"seconds\":%.3f,\"time\":\"%s\"", status,
                          strcmp(status, "skipped") ? job->seconds : 0.0, when);
    if (c->o->shards) snprintf(line + k, sizeof line - k, ",\"shard\":\"%d/%d\"", c->o->shard, c->o->shards);
    if (job->status != DL_OK) {
        strcat(line, ",\"error\":");
        json_string(line, sizeof line - 4, job->error);
    }
    strcat(line, "}\n");
    /* one write per line on a file opened with O_APPEND: whole lines, even from several runs */
    const size_t len = strlen(line);
    if (write(c->manifest_fd, line, len) != (ssize_t)len && !c->manifest_failed) {
        c->manifest_failed = errno ? errno : EIO;
        cli_say("%s: --manifest %s: write error: %s", c->o->cmd, c->o->manifest, strerror(c->manifest_failed));
    }
}

void run_progress(void *vctx, const pipe_job *job, int done, int failed, int total, double elapsed)
{
    run_ctx *c = vctx;
    run_manifest_line(c, job, job->status == DL_OK ? "written" : "failed");
    if (c->bar_shown) fputs("\r\033[K", stderr); /* clear the bar; lines go above it */
    if (job->status != DL_OK) cli_say("%s", job->error);
    fputs(job->info, stderr);
    if (!c->folder) return;
    const int n = done + failed;
    const double rate = elapsed > 0 ? n / elapsed : 0, eta = rate > 0 ? (total - n) / rate : 0;
    if (c->tty) {
        char bar[31];
        const int fill = total ? 30 * n / total : 30;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "%5d/%d [%s] %.2f images/s  ETA %d:%02d", n, total, bar, rate, (int)eta / 60, (int)eta % 60);
        if (failed) fprintf(stderr, "  %d failed", failed);
        c->bar_shown = 1;
    } else if (job->status == DL_OK) {
        cli_say("%s: [%d/%d] %s -> %s (%.2f images/s)", c->o->cmd, n, total, job->input,
                job->output, rate);
    }
    fflush(stderr);
}
