/*
 * deeplab - the command-line program.
 *
 *   deeplab convert SRC.pth DST.safetensors [--dtype f32|f16]
 *   deeplab info [WEIGHTS]
 *   deeplab segment [options] -o OUT.png IN.png
 *   deeplab rmbg [options] -o OUT.png IN.png
 *
 * Every error is one line on stderr, "deeplab: <what>", and the exit status says what kind
 * (see README.md: 64 usage, 65 bad data, 66 missing input, 69 no such device, 70 internal,
 * 71 out of memory, 73 cannot create output, 74 I/O error). Outputs are written to a temporary
 * file and renamed, so a failed run leaves nothing behind.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "deeplab.h"
#include "weights.h"

#define DEFAULT_WEIGHTS "weights/deeplabv3_resnet101.safetensors"
#define VERSION "0.1.0"

static int fail_status(dl_status s)
{
    fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return (int)s;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "deeplab: %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see deeplab %s --help)\n", cmd);
    return DL_EUSAGE;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident memory of this program. VmHWM, not getrusage's ru_maxrss: Linux carries the
 * parent's high-water mark into ru_maxrss across fork and exec, so a deeplab started by a big
 * process (a Python test holding a torch model) would report the parent's peak. */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return (double)kb / 1024.0;
}

/* ------------------------------------------------------------------ options */

typedef struct opts {
    const char *cmd;
    const char *weights, *output, *input, *save_logits;
    int size, threads, verbose;
    dl_device device;
} opts;

/* Parses a whole number in [lo, hi]; -1 on error. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* If argv[*i] is option `name` (as "--name V" or "--name=V"), stores V and returns 1. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **value, int *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != 0) return 0;
    if (*i + 1 >= argc) {
        *missing = 1;
        return 1;
    }
    *value = argv[++*i];
    return 1;
}

/* The options shared by segment and rmbg. Returns 0, or an exit status after printing. */
static int parse_run_options(opts *o, int argc, char **argv)
{
    o->size = 520;
    o->device = DL_DEVICE_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int missing = 0;
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (take_value(argc, argv, &i, "-w", &v, &missing) ||
                   take_value(argc, argv, &i, "--weights", &v, &missing)) {
            if (missing) return usage_error(o->cmd, "%s needs a file", a);
            o->weights = v;
        } else if (take_value(argc, argv, &i, "-o", &v, &missing) ||
                   take_value(argc, argv, &i, "--output", &v, &missing)) {
            if (missing) return usage_error(o->cmd, "%s needs a file", a);
            o->output = v;
        } else if (take_value(argc, argv, &i, "--size", &v, &missing)) {
            if (missing || parse_int(v, 0, 16384, &o->size))
                return usage_error(o->cmd, "--size takes a number of pixels from 0 to 16384, not '%s'", missing ? "" : v);
        } else if (take_value(argc, argv, &i, "--threads", &v, &missing)) {
            if (missing || parse_int(v, 0, 1024, &o->threads))
                return usage_error(o->cmd, "--threads takes a number from 0 (all cores) to 1024, not '%s'", missing ? "" : v);
        } else if (take_value(argc, argv, &i, "--device", &v, &missing)) {
            if (missing) return usage_error(o->cmd, "%s needs auto, cpu or cuda", a);
            if (!strcmp(v, "auto")) o->device = DL_DEVICE_AUTO;
            else if (!strcmp(v, "cpu")) o->device = DL_DEVICE_CPU;
            else if (!strcmp(v, "cuda")) o->device = DL_DEVICE_CUDA;
            else return usage_error(o->cmd, "--device takes auto, cpu or cuda, not '%s'", v);
        } else if (!strcmp(o->cmd, "segment") && take_value(argc, argv, &i, "--save-logits", &v, &missing)) {
            if (missing) return usage_error(o->cmd, "%s needs a file", a);
            o->save_logits = v;
        } else if (a[0] == '-' && a[1] != 0) {
            return usage_error(o->cmd, "unknown option '%s'", a);
        } else if (!o->input) {
            o->input = a;
        } else {
            return usage_error(o->cmd, "one input image expected, got another: '%s'", a);
        }
    }
    if (!o->input) return usage_error(o->cmd, "%s", "no input image given");
    if (!o->output) return usage_error(o->cmd, "%s", "no output file given (-o OUT.png)");
    if (!o->weights) o->weights = getenv("DEEPLAB_WEIGHTS");
    if (!o->weights || !*o->weights) o->weights = DEFAULT_WEIGHTS;
    /* Writing over the input would lose it if anything went wrong half-way. */
    struct stat si, so;
    if (stat(o->input, &si) == 0 && stat(o->output, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return usage_error(o->cmd, "the output '%s' is the input image; choose another file", o->output);
    if (o->save_logits && stat(o->input, &si) == 0 && stat(o->save_logits, &so) == 0 &&
        si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return usage_error(o->cmd, "--save-logits '%s' is the input image; choose another file", o->save_logits);
    return 0;
}

static int load_model(const char *path, dl_device device, int threads, dl_model **m)
{
    dl_options mo = {device, threads};
    dl_status s = dl_model_load(path, &mo, m);
    if (s == DL_ENOINPUT && !strcmp(path, DEFAULT_WEIGHTS))
        fprintf(stderr, "deeplab: %s (get the weights with `make weights`, or pass -w FILE)\n", dl_last_error());
    else if (s != DL_OK)
        fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return (int)s;
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
    if (s != DL_OK) return fail_status(s);
    double t0 = now_seconds();
    int rc = load_model(o->weights, o->device, o->threads, &r->model);
    if (rc) return rc;
    const dl_model_info info = dl_model_info_of(r->model);
    double t1 = now_seconds();
    float *x = NULL;
    s = dl_preprocess(&r->img, o->size, &x, &r->w, &r->h);
    if (s != DL_OK) return fail_status(s);
    r->classes = info.num_classes;
    r->logits = malloc(sizeof(float) * (size_t)r->classes * r->w * r->h);
    if (!r->logits) {
        free(x);
        fprintf(stderr, "deeplab: out of memory for the logits of a %dx%d input\n", r->w, r->h);
        return DL_ENOMEM;
    }
    double t2 = now_seconds();
    s = dl_forward(r->model, x, 1, r->h, r->w, r->logits);
    double t3 = now_seconds();
    free(x);
    if (s != DL_OK) return fail_status(s);
    if (o->verbose) {
        fprintf(stderr, "model:    DeepLabV3-ResNet%d, %d classes, %.1f M parameters (%s), loaded in %.2f s\n",
                info.depth, info.num_classes, (double)info.num_params / 1e6, info.dtype, t1 - t0);
        fprintf(stderr, "device:   %s\n", info.device == DL_DEVICE_CUDA ? "cuda" : "cpu");
        fprintf(stderr, "image:    %s, %dx%d; network input %dx%d\n", o->input, r->img.w, r->img.h, r->w, r->h);
        fprintf(stderr, "forward:  %.3f s (activations %.1f MB)\n", t3 - t2,
                (double)dl_model_plan_bytes(r->model) / (1024.0 * 1024.0));
    }
    if (o->save_logits) {
        int64_t shape[4] = {1, r->classes, r->h, r->w};
        s = dl_npy_write_f32(o->save_logits, r->logits, 4, shape);
        if (s != DL_OK) return fail_status(s);
    }
    return 0;
}

static void print_peak(const opts *o)
{
    if (o->verbose) fprintf(stderr, "memory:   peak resident %.0f MB\n", peak_rss_mb());
}

/* ------------------------------------------------------------------ commands */

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
    "  -v, --verbose         print the model, sizes, time and peak memory to stderr\n";

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

static int cmd_segment(int argc, char **argv)
{
    if (wants_help(argc, argv)) return fputs(segment_help, stdout), 0;
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
            if (s != DL_OK) rc = fail_status(s);
        }
        free(labels);
    }
    print_peak(&o);
    run_free(&r);
    return rc;
}

static int cmd_rmbg(int argc, char **argv)
{
    if (wants_help(argc, argv)) return fputs(rmbg_help, stdout), 0;
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
            if (s != DL_OK) rc = fail_status(s);
        }
        free(prob);
        free(full);
        free(out.px);
    }
    print_peak(&o);
    run_free(&r);
    return rc;
}

static const char *const convert_help =
    "usage: deeplab convert SRC.pth DST.safetensors [--dtype f32|f16]\n"
    "\n"
    "Converts a PyTorch checkpoint (torch.save: zip or legacy format) to safetensors, without\n"
    "PyTorch. Keeps torchvision's tensor names; drops aux_classifier.* and num_batches_tracked;\n"
    "strips DataParallel's 'module.' prefix; unwraps {'model': ...} / {'state_dict': ...}.\n"
    "The pickle is read by an allow-list interpreter: nothing in the file is executed, and a\n"
    "file naming anything but tensors and dicts is refused.\n"
    "\n"
    "  --dtype f32|f16       element type of the output (default f32)\n";

static int cmd_convert(int argc, char **argv)
{
    if (wants_help(argc, argv)) return fputs(convert_help, stdout), 0;
    const char *src = NULL, *dst = NULL;
    dl_dtype dtype = DL_F32;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int missing = 0;
        if (take_value(argc, argv, &i, "--dtype", &v, &missing)) {
            if (!missing && !strcmp(v, "f32")) dtype = DL_F32;
            else if (!missing && !strcmp(v, "f16")) dtype = DL_F16;
            else return usage_error("convert", "--dtype takes f32 or f16%s", "");
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("convert", "unknown option '%s'", argv[i]);
        } else if (!src) {
            src = argv[i];
        } else if (!dst) {
            dst = argv[i];
        } else {
            return usage_error("convert", "too many arguments: '%s'", argv[i]);
        }
    }
    if (!src || !dst) return usage_error("convert", "expected SRC.pth DST.safetensors%s", "");
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return usage_error("convert", "the output '%s' is the input; choose another file", dst);
    dl_status s = dl_convert_checkpoint(src, dst, dtype, stdout);
    return s == DL_OK ? 0 : fail_status(s);
}

static const char *const info_help =
    "usage: deeplab info [WEIGHTS]\n"
    "\n"
    "Prints what a weights file holds: architecture, class count, parameters, dtype.\n"
    "WEIGHTS defaults to $DEEPLAB_WEIGHTS, else " DEFAULT_WEIGHTS ".\n";

static int cmd_info(int argc, char **argv)
{
    if (wants_help(argc, argv)) return fputs(info_help, stdout), 0;
    if (argc > 2) return usage_error("info", "one weights file expected, got '%s' too", argv[2]);
    if (argc == 2 && argv[1][0] == '-') return usage_error("info", "unknown option '%s'", argv[1]);
    const char *path = argc == 2 ? argv[1] : getenv("DEEPLAB_WEIGHTS");
    if (!path || !*path) path = DEFAULT_WEIGHTS;
    dl_model *m;
    int rc = load_model(path, DL_DEVICE_CPU, 1, &m);
    if (rc) return rc;
    dl_model_info info = dl_model_info_of(m);
    printf("weights:       %s\n", path);
    printf("architecture:  DeepLabV3-ResNet%d (output stride 8, ASPP rates 12/24/36)\n", info.depth);
    printf("classes:       %d%s\n", info.num_classes,
           info.num_classes == 21 ? " (PASCAL VOC: background + 20 object classes)" : "");
    printf("parameters:    %lld (%.1f M)\n", (long long)info.num_params, (double)info.num_params / 1e6);
    printf("dtype:         %s\n", info.dtype);
    dl_model_free(m);
    return 0;
}

static const char *const main_help =
    "usage: deeplab COMMAND [options]\n"
    "\n"
    "DeepLabV3 (torchvision's ResNet-101/50 models) in plain C and CUDA: semantic segmentation\n"
    "and background removal.\n"
    "\n"
    "commands:\n"
    "  rmbg      remove the background of a photo (RGBA PNG cut-out)\n"
    "  segment   class map of a photo (palette PNG), optionally the raw logits\n"
    "  info      describe a weights file\n"
    "  convert   PyTorch checkpoint (.pth) -> safetensors, without PyTorch\n"
    "\n"
    "`deeplab COMMAND --help` describes each. Exit status: 0 success, 64 usage, 65 bad data,\n"
    "66 missing input, 69 device unavailable, 70 internal error, 71 out of memory,\n"
    "73 cannot create output, 74 I/O error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "deeplab: expected a command: rmbg, segment, info or convert (see deeplab --help)\n");
        return DL_EUSAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return fputs(main_help, stdout), 0;
    if (!strcmp(argv[1], "--version")) return printf("deeplab %s\n", VERSION), 0;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "segment")) return cmd_segment(argc - 1, argv + 1);
    if (!strcmp(cmd, "rmbg")) return cmd_rmbg(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    fprintf(stderr, "deeplab: unknown command '%s' (see deeplab --help)\n", cmd);
    return DL_EUSAGE;
}
