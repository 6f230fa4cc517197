/*
 * cmd_run.c - `deeplab segment` and `deeplab rmbg`: photos in, the network, class maps or
 * cut-outs out. One photo (-o FILE) or many (-o DIR: files and folders, through the pipeline of
 * pipeline.c with a progress report). This file checks the inputs and outputs, runs the
 * pipeline and reports; the options are run_options.c's, the work per photo run_jobs.c's, the
 * listing of inputs inputs.c's (run.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cuda_device.h"
#include "inputs.h"
#include "run.h"

/* --manifest: opened for appending (a rerun adds its lines), the skipped photos written first. */
static int open_manifest(run_opts *o, run_ctx *c, const joblist *l)
{
    if (!o->manifest) return 0;
    for (int j = 0; j < l->n + l->skipped; j++)
        if (input_same_file(l->jobs[j].input, o->manifest))
            return cli_usage(o->cmd, "--manifest '%s' is an input image; choose another file", o->manifest);
    c->manifest_fd = open(o->manifest, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (c->manifest_fd < 0)
        return cli_error(DL_ECANTCREATE, "%s: cannot open the manifest: %s", o->manifest, strerror(errno));
    for (int j = l->n; j < l->n + l->skipped; j++) run_manifest_line(c, &l->jobs[j], "skipped");
    return 0;
}

static int prepare(run_opts *o, run_ctx *c, joblist *l)
{
    /* -o DIR/ (a final slash), or an existing folder with several inputs or an input folder:
     * many photos; otherwise one photo to -o FILE (or -), the command as it always was */
    const size_t olen = strlen(o->output);
    const int slash = olen && o->output[olen - 1] == '/';
    int any_dir = 0;
    for (int i = 0; i < o->ninputs; i++) any_dir |= input_is_dir(o->inputs[i]);
    c->folder = slash || (input_is_dir(o->output) && (o->ninputs > 1 || any_dir));
    c->tty = isatty(STDERR_FILENO);
    if (!c->folder && o->ninputs > 1)
        return cli_usage(o->cmd, "-o FILE takes one input image; several inputs need -o FOLDER/ (an existing "
                                 "folder, or one to make)");
    if (!c->folder && any_dir)
        return cli_error(DL_ENOINPUT, "%s: is a directory, expected a file (for the photos in it: -o FOLDER/)",
                         o->inputs[0]);
    if (o->rmbg && (o->req.keep_mask_path || o->req.erase_mask_path) && c->folder)
        return cli_usage(o->cmd, "--keep-mask and --erase-mask are painted for one photo: give one input and -o FILE");
    if (o->save_logits && c->folder) return cli_usage(o->cmd, "--save-logits works with one input only");
    if (o->shards && !c->folder)
        return cli_usage(o->cmd, "--shard shares out the photos of a folder run: give -o FOLDER/");
    if (!c->folder) {
        if (input_is_dir(o->output))
            return cli_error(DL_ECANTCREATE, "%s: is a directory, expected a file name (to write into it, end it "
                                             "with a slash: %s/)", o->output, o->output);
        if (input_same_file(o->inputs[0], o->output))
            return cli_usage(o->cmd, "the output '%s' is the input image; choose another file", o->output);
        if (o->save_logits && input_same_file(o->inputs[0], o->save_logits))
            return cli_usage(o->cmd, "--save-logits '%s' is the input image; choose another file", o->save_logits);
        c->format = !strcmp(o->output, "-") ? (o->ext ? o->ext : DL_FORMAT_PNG) : o->ext ? o->ext : DL_FORMAT_AUTO;
        if (joblist_add(l, o->inputs[0], (char *)o->output)) return DL_ENOMEM;
    } else {
        if (!strcmp(o->output, "-")) return cli_usage(o->cmd, "-o - (standard output) takes one input image");
        /* DIR/ is made if missing (not its parents); shards started at once race to make it */
        if (!input_is_dir(o->output) && mkdir(o->output, 0777) != 0 && !(errno == EEXIST && input_is_dir(o->output)))
            return cli_error(DL_ECANTCREATE, "%s: cannot make the folder: %s", o->output, strerror(errno));
        c->format = o->ext ? o->ext : DL_FORMAT_PNG;
        l->shard = o->shard;
        l->shards = o->shards;
        int rc = input_folder_jobs(l, o->cmd, o->inputs, o->ninputs, o->output,
                                   o->ext == DL_FORMAT_JPEG ? "jpg" : "png", o->overwrite);
        if (rc) return rc;
        const int stale = input_remove_stale_temps(l, o->output);
        if (stale)
            cli_say("%s: removed %d unfinished output(s) a killed run left in %s (.NAME.tmp-*)", o->cmd, stale,
                    o->output);
    }
    /* JPEG has no alpha: only opaque results */
    const int jpeg = c->format == DL_FORMAT_JPEG ||
                     (c->format == DL_FORMAT_AUTO && dl_format_of_path(o->output) == DL_FORMAT_JPEG);
    if (jpeg && !o->rmbg) return cli_usage(o->cmd, "class maps are written as PNG, not JPEG ('%s')", o->output);
    const dl_cutout_options *cut = &o->req.cut;
    if (jpeg && cut->format == DL_CUTOUT_LABELS)
        return cli_usage(o->cmd, "--format labels is written as PNG, not JPEG ('%s')", o->output);
    if (jpeg && cut->format == DL_CUTOUT_RGBA &&
        !(cut->background == DL_BG_IMAGE || (cut->background == DL_BG_COLOR && cut->bg_color[3] == 255)))
        return cli_usage(o->cmd, "'%s': JPEG has no alpha channel: write a .png, or give an opaque --bg-color or "
                                 "--bg-image", o->output);
    /* images every photo shares */
    dl_status s = dl_cutout_request_read_images(&o->req);
    if (s != DL_OK) return cli_fail(s);
    return open_manifest(o, c, l);
}

static int run_command(run_opts *o, dl_model *model, pipe_stats *stats_out)
{
    run_ctx c = {.o = o, .model = model, .manifest_fd = -1};
    joblist l = {0};
    int rc = prepare(o, &c, &l);
    const int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN) > 0 ? (int)sysconf(_SC_NPROCESSORS_ONLN) : 1;
    /* threads: on the CPU the network uses every core, so one decoder and one encoder; on a GPU the
     * CPU only decodes and encodes: a quarter of the cores decode (~0.1 s per 1080p photo), the
     * rest but one encode (~0.25 s: class map, upsampling, PNG compression) */
    char why[256];
    const int gpu = o->device == DL_DEVICE_CUDA ||
                    (o->device == DL_DEVICE_AUTO && !model && !dl_cuda_emulated() && dl_cuda_probe(why, sizeof why) > 0) ||
                    (model && dl_model_info_of(model).device == DL_DEVICE_CUDA);
    int decoders = o->io_threads ? o->io_threads : gpu ? (ncpu / 4 > 1 ? ncpu / 4 : 1) : 1;
    int encoders = o->io_threads ? o->io_threads : gpu ? (ncpu - decoders - 1 > 1 ? ncpu - decoders - 1 : 1) : 1;
    pipe_stats stats = {0};
    (void)dl_voc_palette(); /* built on first use: before the threads that read it */
    if (!rc && l.n > 0) {
        c.refiners = calloc((size_t)encoders, sizeof *c.refiners);
        pipe_config cfg = {.size = o->size, .batch = o->batch, .decoders = decoders, .encoders = encoders,
                           .background_io = !gpu, .fit_pixels = (int64_t)(o->req.megapixels * 1e6),
                           .ctx = &c, .load = run_load_model,
                           .finish = o->rmbg ? run_rmbg_finish : run_segment_finish, .progress = run_progress};
        rc = c.refiners ? pipe_run(&cfg, l.jobs, l.n, &stats) : DL_ENOMEM;
    }
    if (c.bar_shown) fputs("\n", stderr);
    if (o->verbose && !c.folder && c.model && stats.forwards) {
        fprintf(stderr, "forward:  %.3f s (activations %.1f MB)\n", stats.forward_seconds,
                (double)dl_model_plan_bytes(c.model) / (1024.0 * 1024.0));
        if (dl_model_info_of(c.model).device == DL_DEVICE_CUDA) /* what the model allocated; the context is extra */
            fprintf(stderr, "gpu memory: %.0f MB peak (weights, activations, input and logits)\n",
                    (double)dl_model_device_bytes(c.model) / (1024.0 * 1024.0));
    }
    if (c.folder && (rc == 0 || stats.done + stats.failed > 0 || l.skipped)) {
        char skipped[96] = "", failed[32] = "", shard[80] = "", load[48] = "";
        if (l.skipped)
            snprintf(skipped, sizeof skipped, ", %d skipped (already there; --overwrite replaces them)", l.skipped);
        if (stats.failed) snprintf(failed, sizeof failed, ", %d failed", stats.failed);
        if (o->shards)
            snprintf(shard, sizeof shard, "; shard %d/%d: %d of the %d photos", o->shard, o->shards, l.n + l.skipped,
                     l.total);
        if (c.own_model) snprintf(load, sizeof load, "; model loaded in %.1f s", stats.load_seconds);
        cli_say("%s: %d written%s%s in %.1f s (%.2f images/s%s%s)", o->cmd, stats.done, skipped, failed, stats.seconds,
                stats.seconds > 0 ? stats.done / stats.seconds : 0.0, shard, load);
        if (o->verbose && stats.forwards) {
            const int n = stats.done + stats.failed;
            cli_say("%s: network %.1f s in %d forward passes (%.3f s per photo); per photo on the %d decoding threads "
                    "%.3f s, on the %d encoding threads %.3f s", o->cmd, stats.forward_seconds, stats.forwards,
                    stats.forward_seconds / n, decoders, stats.decode_seconds / n, encoders,
                    stats.finish_seconds / (stats.done ? stats.done : 1));
        }
    }
    if (o->verbose) fprintf(stderr, "memory:   peak resident %.0f MB\n", cli_peak_rss_mb());
    if (c.manifest_fd >= 0 && (fsync(c.manifest_fd) != 0 && errno != EINVAL) + close(c.manifest_fd) != 0 &&
        !c.manifest_failed)
        rc = rc ? rc : cli_error(DL_EIO, "%s: write error: %s", o->manifest, strerror(errno));
    for (int k = 0; c.refiners && k < encoders; k++) dl_refiner_free(c.refiners[k]);
    free(c.refiners);
    if (c.own_model) dl_model_free(c.model);
    joblist_free(&l);
    if (stats_out) *stats_out = stats;
    return rc;
}

static int run_main(const char *cmd, int argc, char **argv, dl_model *model, pipe_stats *stats)
{
    run_opts o = {.cmd = cmd, .rmbg = !strcmp(cmd, "rmbg")};
    int rc = run_parse_options(&o, argc, argv);
    if (!rc) rc = run_command(&o, model, stats);
    free(o.inputs);
    dl_cutout_request_free(&o.req);
    return rc;
}

int cmd_segment(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(run_segment_help, stdout), 0;
    return run_main("segment", argc, argv, NULL, NULL);
}

int cmd_rmbg(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(run_rmbg_help, stdout), 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-classes")) return run_list_classes();
    return run_main("rmbg", argc, argv, NULL, NULL);
}

int cmd_rmbg_with_model(int argc, char **argv, dl_model *model, pipe_stats *stats)
{
    return run_main("rmbg", argc, argv, model, stats);
}
