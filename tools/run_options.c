/*
 * run_options.c - the command lines of `deeplab segment` and `deeplab rmbg` (run.h): every option
 * into a run_opts, with the defaults, and the help texts. Each bad option is one usage line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run.h"

/* The options of rmbg alone are the fields of a cut-out request (deeplab.h), by the same names.
 * These say something of their own when their value is missing (the others: "takes ..., not ''"). */
static const struct {
    const char *option, *missing;
} rmbg_options[] = {
    {"--classes", "needs a list of classes"},
    {"--keep-mask", "needs an image"},
    {"--erase-mask", "needs an image"},
    {"--bg-image", "needs an image"},
};

/* 1 if argv[*i] was one of rmbg's options (rc set on an error). */
static int take_rmbg_option(run_opts *o, int argc, char **argv, int *i, int *rc)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0) return 0;
    char key[32];
    const size_t n = strcspn(a + 2, "=");
    if (n >= sizeof key) return 0;
    memcpy(key, a + 2, n);
    key[n] = 0;
    const int kind = dl_cutout_request_key(key);
    if (!kind) return 0;
    const char *v = NULL;
    int missing = 0;
    char name[40];
    snprintf(name, sizeof name, "--%s", key);
    dl_status s;
    if (kind == 1 && a[2 + n] == 0) { /* a flag */
        s = dl_cutout_request_set(&o->req, key, NULL, name);
    } else if (kind == 3) { /* --crop or --crop=MARGIN */
        s = dl_cutout_request_set(&o->req, key, a[2 + n] == '=' ? a + 3 + n : NULL, name);
    } else if (kind == 2 && cli_take_value(argc, argv, i, name, &v, &missing)) {
        for (size_t k = 0; missing && k < sizeof rmbg_options / sizeof rmbg_options[0]; k++)
            if (!strcmp(rmbg_options[k].option, name))
                return *rc = cli_usage(o->cmd, "%s %s", a, rmbg_options[k].missing), 1;
        s = dl_cutout_request_set(&o->req, key, missing ? "" : v, name);
    } else {
        return 0; /* --largest=x and the like: unknown options */
    }
    *rc = s == DL_OK ? 0 : cli_usage(o->cmd, "%s", dl_last_error());
    return 1;
}

/* The variables of the schedulers that start the tasks of an array job with an index each, 0
 * for the first: a Kubernetes Indexed Job, a Slurm array (--array=0-N), AWS Batch, Cloud Run. */
static const char *const shard_variables[] = {"JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID",
                                              "AWS_BATCH_JOB_ARRAY_INDEX", "CLOUD_RUN_TASK_INDEX"};

/* --shard I/N or env/N (the index from the first of shard_variables that is set). */
static int parse_shard(run_opts *o, const char *v)
{
    const char *slash = strchr(v, '/');
    char index[32];
    const size_t n = slash ? (size_t)(slash - v) : 0;
    if (!slash || n == 0 || n >= sizeof index || cli_parse_int(slash + 1, 1, 65536, &o->shards))
        return cli_usage(o->cmd, "--shard takes I/N (shard I of N, 0 <= I < N <= 65536) or env/N, not '%s'", v);
    memcpy(index, v, n);
    index[n] = 0;
    if (strcmp(index, "env") != 0) {
        if (cli_parse_int(index, 0, o->shards - 1, &o->shard))
            return cli_usage(o->cmd, "--shard %s: the shard must be a number from 0 to %d", v, o->shards - 1);
        return 0;
    }
    for (size_t k = 0; k < sizeof shard_variables / sizeof *shard_variables; k++) {
        const char *e = getenv(shard_variables[k]);
        if (!e) continue;
        o->shard_from = shard_variables[k];
        if (cli_parse_int(e, 0, o->shards - 1, &o->shard))
            return cli_usage(o->cmd, "--shard %s: %s is '%s', not a shard from 0 to %d (array indices start at 0)",
                             v, shard_variables[k], e, o->shards - 1);
        return 0;
    }
    return cli_usage(o->cmd, "--shard %s: none of JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, "
                             "AWS_BATCH_JOB_ARRAY_INDEX, CLOUD_RUN_TASK_INDEX is set", v);
}

int run_parse_options(run_opts *o, int argc, char **argv)
{
    o->size = 520;
    o->device = DL_DEVICE_AUTO;
    o->batch = 1;
    dl_cutout_request_init(&o->req);
    o->inputs = calloc((size_t)argc, sizeof *o->inputs);
    if (!o->inputs) return DL_ENOMEM;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int missing = 0, rc = 0;
        if (cli_take_common_option(argc, argv, &i, o->cmd, &rc)) {
            if (rc) return rc;
        } else if (o->rmbg && take_rmbg_option(o, argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "--reference")) {
            o->reference = 1;
        } else if (cli_take_value(argc, argv, &i, "--precision", &v, &missing)) {
            static const char *const names[] = {"fp32", "tf32", "fp16", "bf16"};
            int k = 0;
            while (!missing && k < 4 && strcmp(v, names[k])) k++;
            if (missing || k == 4) return cli_usage(o->cmd, "--precision takes fp32, tf32, fp16 or bf16, not '%s'", missing ? "" : v);
            o->precision = (dl_precision)k;
        } else if (cli_take_value(argc, argv, &i, "--shard", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s", "--shard needs I/N or env/N");
            if ((rc = parse_shard(o, v))) return rc;
        } else if (cli_take_value(argc, argv, &i, "--manifest", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs a file", a);
            o->manifest = v;
        } else if (!strcmp(a, "--overwrite")) {
            o->overwrite = 1;
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
        } else if (cli_take_value(argc, argv, &i, "--batch", &v, &missing)) {
            if (missing || cli_parse_int(v, 1, 256, &o->batch))
                return cli_usage(o->cmd, "--batch takes a number of photos from 1 to 256, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--io-threads", &v, &missing)) {
            if (missing || cli_parse_int(v, 1, 256, &o->io_threads))
                return cli_usage(o->cmd, "--io-threads takes a number from 1 to 256, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--ext", &v, &missing)) {
            if (!missing && !strcmp(v, "png")) o->ext = DL_FORMAT_PNG;
            else if (!missing && (!strcmp(v, "jpg") || !strcmp(v, "jpeg"))) o->ext = DL_FORMAT_JPEG;
            else return cli_usage(o->cmd, "--ext takes png or jpg, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--device", &v, &missing)) {
            if ((rc = cli_parse_device(o->cmd, missing ? NULL : v, &o->device))) return rc;
        } else if (!o->rmbg && cli_take_value(argc, argv, &i, "--save-logits", &v, &missing)) {
            if (missing) return cli_usage(o->cmd, "%s needs a file", a);
            o->save_logits = v;
        } else if (a[0] == '-' && a[1] != 0) {
            return cli_usage(o->cmd, "unknown option '%s'", a);
        } else {
            o->inputs[o->ninputs++] = a;
        }
    }
    if (!o->ninputs) return cli_usage(o->cmd, "%s", "no input image given");
    if (!o->output) return cli_usage(o->cmd, "%s", "no output file given (-o OUT.png)");
    if (!o->weights) o->weights = getenv("DEEPLAB_WEIGHTS");
    if (!o->weights || !*o->weights) o->weights = DEFAULT_WEIGHTS;
    return 0;
}

/* ------------------------------------------------------------------ help */

#define RUN_COMMON_HELP                                                                            \
    "  -w, --weights FILE    safetensors weights (default: $DEEPLAB_WEIGHTS, else\n"                \
    "                        " DEFAULT_WEIGHTS ")\n"                                                \
    "  --size N              resize so the shorter side is N pixels before the network\n"          \
    "                        (default 520, as torchvision; 0 = the image's own size)\n"            \
    "  --device D            auto (GPU when there is one), cpu, cuda, or cuda:N (GPU N alone)\n"  \
    "  --threads N           CPU threads of the network (default 0 = all cores)\n"                 \
    "  --reference           CPU: run the plain-C reference layers (slow; for checking)\n"         \
    "  --precision P         fp32 (default); bf16 on the GPU or on CPUs with AVX512_BF16 (bf16\n"  \
    "                        inputs and weights, sums in fp32: 1.6x faster on the CPU); on the\n" \
    "                        GPU also tf32 or fp16 (the tensor cores: several times faster)\n"    \
    "  -v, --verbose         print the model, sizes, time and peak memory to stderr\n"             \
    "\n"                                                                                           \
    "many photos (several inputs, folders, or -o ending in /):\n"                                  \
    "  -o DIR                write DIR/NAME.png for every IN (folders: their .png/.jpg files);\n"  \
    "                        outputs already there are skipped, a photo that fails is reported\n"  \
    "                        and the others go on; exit status: that of the first failure\n"      \
    "  --overwrite           replace outputs that are already there\n"                             \
    "  --batch N             photos of the same size per forward pass (default 1; 4 to 8 can be\n" \
    "                        faster on a GPU)\n"                                                   \
    "  --io-threads N        decoding and encoding threads, each (default: 1 on the CPU; on a\n"   \
    "                        GPU most cores encode)\n"                                             \
    "  --shard I/N           only shard I (0 to N-1) of the photos: N runs with the same inputs\n" \
    "                        and -o (on N machines, at once or not) do each photo exactly once;\n" \
    "                        photos are given to shards by a hash of their file name\n"            \
    "  --shard env/N         I from the scheduler: $JOB_COMPLETION_INDEX (Kubernetes Indexed\n"    \
    "                        Job), $SLURM_ARRAY_TASK_ID (--array=0-N-1), $AWS_BATCH_JOB_ARRAY_INDEX\n" \
    "                        or $CLOUD_RUN_TASK_INDEX\n"                                           \
    "  --manifest FILE       append one JSON line per photo as it ends: input, output, status\n"   \
    "                        (written, skipped or failed), seconds, time (UTC), error\n"

const char *const run_segment_help =
    "usage: deeplab segment [options] -o OUT.png IN\n"
    "       deeplab segment [options] -o DIR IN... (files and folders)\n"
    "\n"
    "Writes the class of every pixel as a palette PNG (PASCAL VOC colours) at the input's size.\n"
    "IN: PNG or JPEG (EXIF orientation applied); - reads standard input, -o - writes standard output.\n"
    "\n"
    "  -o, --output FILE     the class map (PNG), required\n"
    "  --save-logits F.npy   also write the logits at network size, float32 (1, classes, H, W)\n"
    RUN_COMMON_HELP CLI_LIMITS_HELP;

const char *const run_rmbg_help =
    "usage: deeplab rmbg [options] -o OUT.png IN\n"
    "       deeplab rmbg [options] -o DIR IN... (files and folders)\n"
    "\n"
    "Removes the background: writes the photo as RGBA with alpha = the probability that the pixel\n"
    "belongs to one of the kept classes, refined along the photo's edges, at full size.\n"
    "IN: PNG or JPEG (EXIF orientation applied); - reads standard input, -o - writes standard output.\n"
    "\n"
    "  -o, --output FILE     the cut-out; .jpg/.jpeg writes JPEG (needs an opaque background)\n"
    "\n"
    "what to keep:\n"
    "  --classes LIST        VOC classes to keep, e.g. person,dog (default: all but background)\n"
    "  --list-classes        print the class names and exit\n"
    "  --keep-at X,Y         keep only the object(s) under this pixel (repeatable)\n"
    "  --largest             keep only the largest object\n"
    "  --threshold T         hard mask: opaque where alpha >= T (0 < T <= 1), else transparent\n"
    "  --roi X0,Y0,X1,Y1     keep only what lies in this box (pixels, or percent: 10%,0%,90%,100%)\n"
    "\n"
    "edges:\n"
    "  --refine guided|none  follow the photo's edges with a guided filter (default guided)\n"
    "  --refine-radius N     its window radius in pixels (default: two cells of the network's\n"
    "                        output grid: 33 on a 1920x1080 photo at --size 520)\n"
    "  --refine-eps E        edge strength: smaller follows fainter edges (default 0.001)\n"
    "  --decontaminate       take the old background's colour out of semi-transparent edges\n"
    "\n"
    "corrections (one photo):\n"
    "  --keep-mask M.png     white pixels of M (the photo's size) are kept, edges snap to the photo\n"
    "  --erase-mask M.png    white pixels of M are removed\n"
    "  --stroke keep|erase,R,X,Y[,X,Y...]  a brush stroke of radius R through the points (repeatable;\n"
    "                        later strokes win; what the editor of `deeplab serve` sends)\n"
    "\n"
    "output:\n"
    "  --format F            rgba (default), mask (the alpha as gray), overlay (the photo tinted by\n"
    "                        class, with a legend), labels (the kept pixels' classes, palette PNG)\n"
    "  --bg-color RRGGBB[AA] composite over this colour (opaque: RGB output, JPEG possible); also\n"
    "                        RGB[A] and CSS names (white, lightblue)\n"
    "  --bg-image FILE       composite over this picture, scaled to cover the photo\n"
    "  --crop[=MARGIN]       crop to the subject (every pixel not fully transparent) plus MARGIN px\n"
    "  --crop-margin M       margins as CSS: 1, 2 or 4 of 20px or 10% (of the subject), up to 500px/50%\n"
    "  --scale N%            scale the subject to fit N% (10 to 100) of the picture (default original)\n"
    "  --position P          move it: center, X% (both axes) or X%,Y% of the free space (default: as\n"
    "                        it was; centred when scaled)\n"
    "  --megapixels MP       scale the photo down to at most MP million pixels first (0.25: 625x400)\n"
    "  --jpeg-quality Q      1 to 100 (default 90)\n"
    "  --ext png|jpg         the output type with -o DIR or -o - (default png)\n"
    "\n"
    "network:\n"
    RUN_COMMON_HELP CLI_LIMITS_HELP;

int run_list_classes(void)
{
    printf("the 21 classes of the published model (PASCAL VOC), for --classes:\n");
    for (int c = 0; dl_voc_class_name(c); c++) printf("%3d  %s\n", c, dl_voc_class_name(c));
    printf("models with other class counts: use the class numbers\n");
    return 0;
}
