/*
 * cmd_run.c - `deeplab segment` and `deeplab rmbg`: image in, network, class map or cut-out out.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

typedef struct opts {
    const char *cmd;
    const char *weights, *output, *input, *save_logits;
    int size, threads, verbose, reference;
    dl_device device;
} opts;

/* Parses a whole number in [lo, hi]; -1 on error. */
/* The options shared by segment and rmbg. Returns 0, or an exit status after printing. */
static int parse_run_options(opts *o, int argc, char **argv)
{
    o->size = 520;
    o->device = DL_DEVICE_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int missing = 0, rc;
        if (cli_take_common_option(argc, argv, &i, o->cmd, &rc)) {
            if (rc) return rc;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "--reference")) {
            o->reference = 1;
        } else if (cli_take_value(argc, argv, &i, "-w", &v, &missing) ||
                   cli_take_value(argc, argv, &i, "--weights", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs a file", a);
            o->weights = v;
        } else if (cli_take_value(argc, argv, &i, "-o", &v, &missing) ||
                   cli_take_value(argc, argv, &i, "--output", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs a file", a);
            o->output = v;
        } else if (cli_take_value(argc, argv, &i, "--size", &v, &missing)) {
            if (missing || cli_parse_int(v, 0, 16384, &o->size))
                return cli_usage(o->cmd, "--size takes a number of pixels from 0 to 16384, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--threads", &v, &missing)) {
            if (missing || cli_parse_int(v, 0, 1024, &o->threads))
                return cli_usage(o->cmd, "--threads takes a number from 0 (all cores) to 1024, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--device", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs auto, cpu or cuda", a);
            if (!strcmp(v, "auto")) o->device = DL_DEVICE_AUTO;
            else if (!strcmp(v, "cpu")) o->device = DL_DEVICE_CPU;
            else if (!strcmp(v, "cuda")) o->device = DL_DEVICE_CUDA;
            else return cli_usage(o->cmd, "--device takes auto, cpu or cuda, not '%s'", v);
        } else if (!strcmp(o->cmd, "segment") && cli_take_value(argc, argv, &i, "--save-logits", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs a file", a);
            o->save_logits = v;
        } else if (a[0] == '-' && a[1] != 0) {
            return cli_usage(o->cmd, "unknown option '%s'", a);
        } else if (!o->input) {
            o->input = a;
        } else {
            return cli_usage(o->cmd, "one input image expected, got another: '%s'", a);
        }
    }
    if (!o->input) return cli_usage(o->cmd, "%s", "no input image given");
    if (!o->output) return cli_usage(o->cmd, "%s", "no output file given (-o OUT.png)");
    if (!o->weights) o->weights = getenv("DEEPLAB_WEIGHTS");
    if (!o->weights || !*o->weights) o->weights = DEFAULT_WEIGHTS;
    /* Writing over the input would lose it if anything went wrong half-way. */
    struct stat si, so;
    if (stat(o->input, &si) == 0 && stat(o->output, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return cli_usage(o->cmd, "the output '%s' is the input image; choose another file", o->output);
    if (o->save_logits && stat(o->input, &si) == 0 && stat(o->save_logits, &so) == 0 &&
        si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return cli_usage(o->cmd, "--save-logits '%s' is the input image; choose another file", o->save_logits);
    return 0;
}

/* Reads the image, runs the network; on success *logits is classes x h x w at network size. */
typedef struct run_result {
    dl_image img;
    dl_model *model;
    float *logits;
    int w, h, classes;
} run_result;

static void run_free(run_result *r)
{
    dl_image_free(&r->img);
    dl_model_free(r->model);
    free(r->logits);
}

static int run_network(const opts *o, run_result *r)
{
    memset(r, 0, sizeof *r);
    dl_status s = dl_image_read(o->input, &r->img);
    if (s != DL_OK) return cli_fail(s);
    double t0 = cli_seconds();
    dl_options mo = {.device = o->device, .threads = o->threads, .reference = o->reference};
    int rc = cli_load_model(o->weights, &mo, &r->model);
    if (rc) return rc;
    const dl_model_info info = dl_model_info_of(r->model);
    double t1 = cli_seconds();
    float *x = NULL;
    s = dl_preprocess(&r->img, o->size, &x, &r->w, &r->h);
    if (s != DL_OK) return cli_fail(s);
    r->classes = info.num_classes;
    r->logits = malloc(sizeof(float) * (size_t)r->classes * r->w * r->h);
    if (!r->logits) {
        free(x);
        fprintf(stderr, "deeplab: out of memory for the logits of a %dx%d input\n", r->w, r->h);
        return DL_ENOMEM;
    }
    double t2 = cli_seconds();
    s = dl_forward(r->model, x, 1, r->h, r->w, r->logits);
    double t3 = cli_seconds();
    free(x);
    if (s != DL_OK) return cli_fail(s);
    if (o->verbose) {
        fprintf(stderr, "model:    DeepLabV3-ResNet%d, %d classes, %.1f M parameters (%s), loaded in %.2f s\n",
                info.depth, info.num_classes, (double)info.num_params / 1e6, info.dtype, t1 - t0);
        if (info.device == DL_DEVICE_CUDA) fprintf(stderr, "device:   cuda\n");
        else fprintf(stderr, "device:   cpu (%s, %d threads)\n", info.path, info.threads);
        fprintf(stderr, "image:    %s, %dx%d; network input %dx%d\n", o->input, r->img.w, r->img.h, r->w, r->h);
        fprintf(stderr, "forward:  %.3f s (activations %.1f MB)\n", t3 - t2,
                (double)dl_model_plan_bytes(r->model) / (1024.0 * 1024.0));
        if (info.device == DL_DEVICE_CUDA) /* what the model allocated; the CUDA context is extra */
            fprintf(stderr, "gpu memory: %.0f MB peak (weights, activations, input and logits)\n",
                    (double)dl_model_device_bytes(r->model) / (1024.0 * 1024.0));
    }
    if (o->save_logits) {
        int64_t shape[4] = {1, r->classes, r->h, r->w};
        s = dl_npy_write_f32(o->save_logits, r->logits, 4, shape);
        if (s != DL_OK) return cli_fail(s);
    }
    return 0;
}

static void print_peak(const opts *o)
{
    if (o->verbose) fprintf(stderr, "memory:   peak resident %.0f MB\n", cli_peak_rss_mb());
}

static const char *const segment_help =
    "usage: deeplab segment [options] -o OUT.png IN.png\n"
    "\n"
    "Writes the class of every pixel as a palette PNG (PASCAL VOC colours) at the input's size.\n"
    "\n"
    "  -o, --output FILE     the class map (PNG), required\n"
    "  -w, --weights FILE    safetensors weights (default: $DEEPLAB_WEIGHTS, else\n"
    "                        " DEFAULT_WEIGHTS ")\n"
    "  --size N              resize so the shorter side is N pixels before the network\n"
    "                        (default 520, as torchvision; 0 = the image's own size)\n"
    "  --device D            auto (GPU when there is one), cpu or cuda (default auto)\n"
    "  --threads N           CPU threads (default 0 = all cores)\n"
    "  --reference           CPU: run the plain-C reference layers (slow; for checking)\n"
    "  --save-logits F.npy   also write the logits at network size, float32 (1, classes, H, W)\n"
    "  -v, --verbose         print the model, sizes, time and peak memory to stderr\n";

static const char *const rmbg_help =
    "usage: deeplab rmbg [options] -o OUT.png IN.png\n"
    "\n"
    "Removes the background: writes the photo as RGBA with alpha = 255 x the probability that\n"
    "the pixel belongs to any of the model's object classes (not background), at full size.\n"
    "\n"
    "  -o, --output FILE     the cut-out (PNG with alpha), required\n"
    "  -w, --weights FILE    safetensors weights (default: $DEEPLAB_WEIGHTS, else\n"
    "                        " DEFAULT_WEIGHTS ")\n"
    "  --size N              shorter side of the network input (default 520; 0 = image size)\n"
    "  --device D            auto, cpu or cuda (default auto)\n"
    "  --threads N           CPU threads (default 0 = all cores)\n"
    "  --reference           CPU: run the plain-C reference layers (slow; for checking)\n"
    "  -v, --verbose         print the model, sizes, time and peak memory to stderr\n";

int cmd_segment(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(segment_help, stdout), 0;
    opts o = {.cmd = "segment"};
    int rc = parse_run_options(&o, argc, argv);
    if (rc) return rc;
    run_result r;
    rc = run_network(&o, &r);
    if (!rc) {
        uint8_t *labels = malloc((size_t)r.img.w * r.img.h);
        if (!labels) {
            fprintf(stderr, "deeplab: out of memory for a %dx%d class map\n", r.img.w, r.img.h);
            rc = DL_ENOMEM;
        } else {
            dl_status s = dl_labels_from_logits(r.logits, r.classes, r.h, r.w, labels, r.img.w, r.img.h);
            if (s == DL_OK)
                s = dl_png_write_indexed(o.output, labels, r.img.w, r.img.h, dl_voc_palette(), r.classes);
            if (s != DL_OK) rc = cli_fail(s);
        }
        free(labels);
    }
    print_peak(&o);
    run_free(&r);
    return rc;
}

int cmd_rmbg(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(rmbg_help, stdout), 0;
    opts o = {.cmd = "rmbg"};
    int rc = parse_run_options(&o, argc, argv);
    if (rc) return rc;
    run_result r;
    rc = run_network(&o, &r);
    if (!rc) {
        const int W = r.img.w, H = r.img.h;
        float *prob = malloc(sizeof(float) * (size_t)r.w * r.h);
        float *full = malloc(sizeof(float) * (size_t)W * H);
        dl_image out = {W, H, 4, malloc((size_t)W * H * 4)};
        if (!prob || !full || !out.px) {
            fprintf(stderr, "deeplab: out of memory for a %dx%d cut-out\n", W, H);
            rc = DL_ENOMEM;
        } else {
            dl_foreground_prob(r.logits, r.classes, r.h, r.w, prob);
            dl_resize_map(prob, r.h, r.w, full, H, W);
            for (size_t i = 0; i < (size_t)W * H; i++) {
                float a = full[i] < 0 ? 0 : full[i] > 1 ? 1 : full[i];
                memcpy(out.px + 4 * i, r.img.px + 3 * i, 3);
                out.px[4 * i + 3] = (uint8_t)lrintf(255.0f * a);
            }
            dl_status s = dl_png_write(o.output, &out);
            if (s != DL_OK) rc = cli_fail(s);
        }
        free(prob);
        free(full);
        free(out.px);
    }
    print_peak(&o);
    run_free(&r);
    return rc;
}

