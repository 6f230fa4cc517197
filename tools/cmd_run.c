/*
 * cmd_run.c - `deeplab segment` and `deeplab rmbg`: photos in, the network, class maps or
 * cut-outs out. One photo (-o FILE) or many (-o DIR: files and folders, through the pipeline of
 * pipeline.c with a progress report). The image work itself is in the library (dl_cutout_make,
 * dl_labels_from_logits); this file parses options, names outputs and reports.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cuda_device.h"
#include "pipeline.h"
#include "status.h"

#define MAX_POINTS 64

typedef struct opts {
    const char *cmd;
    int rmbg;
    const char *weights, *output, *save_logits;
    const char **inputs;
    int ninputs;
    int size, threads, verbose, reference;
    dl_device device;
    /* many photos */
    int overwrite, batch, io_threads;
    dl_file_format ext; /* the output type with -o DIR or -o - (PNG unless --ext jpg) */
    /* rmbg */
    dl_cutout_options cut;
    uint8_t classes[256];
    int have_classes;
    dl_point points[MAX_POINTS];
    const char *keep_mask, *erase_mask, *bg_image;
    int jpeg_quality;
} opts;

/* ------------------------------------------------------------------ options */

static int parse_point(const char *s, dl_point *p)
{
    char tail;
    return sscanf(s, "%d,%d%c", &p->x, &p->y, &tail) == 2 && p->x >= 0 && p->y >= 0 ? 0 : -1;
}

static int parse_color(const char *s, uint8_t rgba[4])
{
    if (*s == '#') s++;
    const size_t n = strlen(s);
    if ((n != 6 && n != 8) || strspn(s, "0123456789abcdefABCDEF") != n) return -1;
    unsigned v[4] = {0, 0, 0, 255};
    for (size_t k = 0; k < n / 2; k++) sscanf(s + 2 * k, "%2x", &v[k]);
    for (int k = 0; k < 4; k++) rgba[k] = (uint8_t)v[k];
    return 0;
}

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

/* "person,dog,15": VOC names or class numbers, into o->classes. */
static int parse_classes(opts *o, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    int n = 0, rc = 0;
    memset(o->classes, 0, sizeof o->classes);
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save), n++) {
        int c = dl_voc_class_index(tok);
        if (c < 0 && cli_parse_int(tok, 0, 255, &c))
            rc = cli_usage(o->cmd, "--classes: unknown class '%s'; deeplab rmbg --list-classes lists them", tok);
        else o->classes[c] = 1;
    }
    free(copy);
    if (!rc && n == 0) rc = cli_usage(o->cmd, "--classes needs a list of classes, like person,dog%s", "");
    o->have_classes = 1;
    return rc;
}

/* The options of rmbg alone; 1 if argv[*i] was one (rc set on an error). */
static int take_rmbg_option(opts *o, int argc, char **argv, int *i, int *rc)
{
    const char *v = NULL, *a = argv[*i];
    int missing = 0;
    dl_cutout_options *c = &o->cut;
#define BAD(...) (*rc = cli_usage(o->cmd, __VA_ARGS__), 1)
    if (!strcmp(a, "--largest")) {
        c->largest = 1;
    } else if (!strcmp(a, "--decontaminate")) {
        c->decontaminate = 1;
    } else if (!strcmp(a, "--crop") || !strncmp(a, "--crop=", 7)) {
        c->crop = 1;
        if (a[6] == '=' && cli_parse_int(a + 7, 0, 1 << 20, &c->crop_margin))
            return BAD("--crop=MARGIN takes a number of pixels, not '%s'", a + 7);
    } else if (cli_take_value(argc, argv, i, "--classes", &v, &missing)) {
        if (missing) return BAD("%s needs a list of classes", a);
        *rc = parse_classes(o, v);
    } else if (cli_take_value(argc, argv, i, "--keep-at", &v, &missing)) {
        if (missing || c->nkeep_at == MAX_POINTS || parse_point(v, &o->points[c->nkeep_at]))
            return BAD("--keep-at takes X,Y (pixels from the top-left corner, up to 64 points), not '%s'",
                       missing ? "" : v);
        c->nkeep_at++;
    } else if (cli_take_value(argc, argv, i, "--threshold", &v, &missing)) {
        if (missing || parse_float(v, 1e-6, 1, &c->threshold))
            return BAD("--threshold takes a number above 0, at most 1, not '%s'", missing ? "" : v);
    } else if (cli_take_value(argc, argv, i, "--refine", &v, &missing)) {
        if (!missing && !strcmp(v, "guided")) c->refine = 1;
        else if (!missing && !strcmp(v, "none")) c->refine = 0;
        else return BAD("--refine takes guided or none, not '%s'", missing ? "" : v);
    } else if (cli_take_value(argc, argv, i, "--refine-radius", &v, &missing)) {
        if (missing || cli_parse_int(v, 1, 4096, &c->refine_params.radius))
            return BAD("--refine-radius takes a number of pixels from 1 to 4096, not '%s'", missing ? "" : v);
    } else if (cli_take_value(argc, argv, i, "--refine-eps", &v, &missing)) {
        if (missing || parse_float(v, 1e-8, 10, &c->refine_params.eps))
            return BAD("--refine-eps takes a number above 0 (default 0.001), not '%s'", missing ? "" : v);
    } else if (cli_take_value(argc, argv, i, "--keep-mask", &v, &missing)) {
        if (missing) return BAD("%s needs an image", a);
        o->keep_mask = v;
    } else if (cli_take_value(argc, argv, i, "--erase-mask", &v, &missing)) {
        if (missing) return BAD("%s needs an image", a);
        o->erase_mask = v;
    } else if (cli_take_value(argc, argv, i, "--format", &v, &missing)) {
        static const char *const names[] = {"rgba", "mask", "overlay", "labels"};
        int k = 0;
        while (k < 4 && (missing || strcmp(v, names[k]))) k++;
        if (k == 4) return BAD("--format takes rgba, mask, overlay or labels, not '%s'", missing ? "" : v);
        c->format = (dl_cutout_format)k;
    } else if (cli_take_value(argc, argv, i, "--bg-color", &v, &missing)) {
        if (missing || parse_color(v, c->bg_color))
            return BAD("--bg-color takes RRGGBB or RRGGBBAA in hexadecimal (ffffff: white), not '%s'",
                       missing ? "" : v);
        c->background = DL_BG_COLOR;
    } else if (cli_take_value(argc, argv, i, "--bg-image", &v, &missing)) {
        if (missing) return BAD("%s needs an image", a);
        o->bg_image = v;
        c->background = DL_BG_IMAGE;
    } else if (cli_take_value(argc, argv, i, "--jpeg-quality", &v, &missing)) {
        if (missing || cli_parse_int(v, 1, 100, &o->jpeg_quality))
            return BAD("--jpeg-quality takes 1 to 100, not '%s'", missing ? "" : v);
    } else {
        return 0;
    }
#undef BAD
    return 1;
}

static int parse_run_options(opts *o, int argc, char **argv)
{
    o->size = 520;
    o->device = DL_DEVICE_AUTO;
    o->batch = 1;
    o->cut.refine = 1;
    o->jpeg_quality = 90;
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
            if (missing) return cli_usage(o->cmd, "%s needs auto, cpu or cuda", a);
            if (!strcmp(v, "auto")) o->device = DL_DEVICE_AUTO;
            else if (!strcmp(v, "cpu")) o->device = DL_DEVICE_CPU;
            else if (!strcmp(v, "cuda")) o->device = DL_DEVICE_CUDA;
            else return cli_usage(o->cmd, "--device takes auto, cpu or cuda, not '%s'", v);
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
    if (o->have_classes) o->cut.classes = o->classes;
    o->cut.keep_at = o->points;
    return 0;
}

/* ------------------------------------------------------------------ jobs */

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b) && strcmp(a, "-")) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int is_dir(const char *path)
{
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct joblist {
    pipe_job *jobs;
    int n, cap, skipped;
    char **paths; /* strings the jobs point to, freed at the end */
    int npaths, paths_cap;
} joblist;

static char *keep_string(joblist *l, char *s)
{
    if (!s) return NULL;
    if (l->npaths == l->paths_cap) {
        l->paths_cap = l->paths_cap ? 2 * l->paths_cap : 64;
        char **p = realloc(l->paths, sizeof *p * (size_t)l->paths_cap);
        if (!p) return free(s), NULL;
        l->paths = p;
    }
    return l->paths[l->npaths++] = s;
}

static void joblist_free(joblist *l)
{
    for (int i = 0; i < l->npaths; i++) free(l->paths[i]);
    free(l->paths);
    free(l->jobs);
}

static int add_job(joblist *l, const char *input, char *output)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        pipe_job *j = realloc(l->jobs, sizeof *j * (size_t)l->cap);
        if (!j) return DL_ENOMEM;
        l->jobs = j;
    }
    memset(&l->jobs[l->n], 0, sizeof l->jobs[l->n]);
    l->jobs[l->n].input = input;
    l->jobs[l->n++].output = output;
    return 0;
}

/* DIR/NAME.EXT for an input: its base name without extension. */
static char *output_name(const char *dir, const char *input, const char *ext)
{
    const char *base = strrchr(input, '/') ? strrchr(input, '/') + 1 : input;
    const char *dot = strrchr(base, '.');
    const int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    const size_t dl = strlen(dir);
    char *out = malloc(dl + 1 + (size_t)stem + strlen(ext) + 2);
    if (out) sprintf(out, "%s%s%.*s.%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", stem, base, ext);
    return out;
}

typedef struct file_id {
    dev_t dev;
    ino_t ino;
} file_id;

static int by_id(const void *a, const void *b)
{
    const file_id *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int by_output(const void *a, const void *b)
{
    return strcmp(((const pipe_job *)a)->output, ((const pipe_job *)b)->output);
}

static int check_outputs(const opts *o, joblist *l)
{
    pipe_job *sorted = malloc(sizeof *sorted * (size_t)(l->n ? l->n : 1));
    file_id *ids = malloc(sizeof *ids * (size_t)(l->n ? l->n : 1));
    int rc = sorted && ids ? 0 : DL_ENOMEM, nids = 0;
    if (!rc) {
        memcpy(sorted, l->jobs, sizeof *sorted * (size_t)l->n);
        qsort(sorted, (size_t)l->n, sizeof *sorted, by_output);
        for (int j = 1; j < l->n && !rc; j++)
            if (!strcmp(sorted[j - 1].output, sorted[j].output))
                rc = cli_usage(o->cmd, "two inputs would both be written to '%s'; rename one", sorted[j].output);
        for (int j = 0; j < l->n; j++) {
            struct stat st;
            if (stat(l->jobs[j].input, &st) == 0) ids[nids++] = (file_id){st.st_dev, st.st_ino};
        }
        qsort(ids, (size_t)nids, sizeof *ids, by_id);
        for (int j = 0; j < l->n && !rc; j++) {
            struct stat st;
            if (stat(l->jobs[j].output, &st) != 0) continue;
            file_id id = {st.st_dev, st.st_ino};
            if (bsearch(&id, ids, (size_t)nids, sizeof *ids, by_id))
                rc = cli_usage(o->cmd, "the output '%s' would be an input image; choose another folder",
                               l->jobs[j].output);
        }
    }
    free(sorted);
    free(ids);
    return rc;
}

/* The jobs for -o DIR: every input file, and the PNG/JPEG files of every input folder (sorted,
 * not recursive, hidden files skipped). Existing outputs are skipped unless --overwrite. */
static int folder_jobs(const opts *o, joblist *l)
{
    const char *ext = o->ext == DL_FORMAT_JPEG ? "jpg" : "png";
    for (int i = 0; i < o->ninputs; i++) {
        const char *in = o->inputs[i];
        if (!strcmp(in, "-"))
            return cli_usage(o->cmd, "- (standard input) works with one input and -o FILE only%s", "");
        if (!is_dir(in)) {
            char *out = keep_string(l, output_name(o->output, in, ext));
            if (!out || add_job(l, in, out)) return DL_ENOMEM;
            continue;
        }
        DIR *d = opendir(in);
        if (!d) {
            fprintf(stderr, "deeplab: %s: cannot read the folder: %s\n", in, strerror(errno));
            return DL_ENOINPUT;
        }
        char **names = NULL;
        int n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **nn = realloc(names, sizeof *nn * (size_t)cap);
                if (!nn) break;
                names = nn;
            }
            const size_t len = strlen(in) + strlen(e->d_name) + 2;
            if (!(names[n] = malloc(len))) break;
            snprintf(names[n], len, "%s%s%s", in, in[strlen(in) - 1] == '/' ? "" : "/", e->d_name);
            if (is_dir(names[n])) free(names[n]);
            else n++;
        }
        closedir(d);
        if (n) qsort(names, (size_t)n, sizeof *names, by_name);
        for (int k = 0; k < n; k++) {
            char *path = keep_string(l, names[k]);
            char *out = path ? keep_string(l, output_name(o->output, path, ext)) : NULL;
            if (!out || add_job(l, path, out)) {
                for (int m = k + 1; m < n; m++) free(names[m]);
                free(names);
                return DL_ENOMEM;
            }
        }
        free(names);
    }
    /* two inputs must not share an output, and no output may be an input: sorted, so that a
     * folder of many thousand photos is checked in n log n */
    if (l->n == 0) {
        fprintf(stderr, "deeplab: %s: no PNG or JPEG photo (.png, .jpg, .jpeg) in the input folder(s)\n", o->cmd);
        return DL_ENOINPUT;
    }
    int rc = check_outputs(o, l);
    if (rc) return rc;
    if (!o->overwrite) { /* outputs already there are kept */
        int k = 0;
        for (int j = 0; j < l->n; j++) {
            struct stat st;
            if (stat(l->jobs[j].output, &st) == 0) l->skipped++;
            else l->jobs[k++] = l->jobs[j];
        }
        l->n = k;
    }
    return 0;
}

/* ------------------------------------------------------------------ running */

typedef struct run_ctx {
    opts *o;
    int folder;              /* -o DIR */
    dl_model *model;         /* loaded by load_model, or given (bench) */
    int own_model;
    dl_refiner **refiners;   /* one per encoder, made on first use */
    dl_image keep_mask, erase_mask, bg_image;
    dl_file_format format;   /* of the outputs */
    int tty;                 /* stderr is a terminal: a progress bar */
    int bar_shown;
} run_ctx;

static int load_model(void *vctx, dl_model **model)
{
    run_ctx *c = vctx;
    opts *o = c->o;
    if (!c->model) {
        dl_options mo = {.device = o->device, .threads = o->threads, .reference = o->reference};
        const double t0 = cli_seconds();
        int rc = cli_load_model(o->weights, &mo, &c->model);
        if (rc) return rc;
        c->own_model = 1;
        if (o->verbose) {
            const dl_model_info info = dl_model_info_of(c->model);
            fprintf(stderr, "model:    DeepLabV3-ResNet%d, %d classes, %.1f M parameters (%s), loaded in %.2f s\n",
                    info.depth, info.num_classes, (double)info.num_params / 1e6, info.dtype, cli_seconds() - t0);
        }
    }
    const dl_model_info info = dl_model_info_of(c->model);
    if (o->verbose) {
        if (info.device == DL_DEVICE_CUDA) fprintf(stderr, "device:   cuda\n");
        else fprintf(stderr, "device:   cpu (%s, %d threads)\n", info.path, info.threads);
    }
    for (int k = info.num_classes; o->have_classes && k < 256; k++)
        if (o->classes[k]) {
            fprintf(stderr, "deeplab: %s: --classes: class %d, but the model has classes 0 to %d "
                            "(see deeplab %s --help)\n", o->cmd, k, info.num_classes - 1, o->cmd);
            return DL_EUSAGE;
        }
    *model = c->model;
    return 0;
}

/* Adds "   subject ... classes ..." to the job's report (-v). */
static void describe(pipe_job *job, const dl_cutout *cut, const dl_image *photo, int net_w, int net_h, int folder)
{
    char *s = job->info;
    size_t n = sizeof job->info, k = 0;
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

static dl_status rmbg_finish(void *vctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
                             const float *logits, int C, int h, int w)
{
    run_ctx *c = vctx;
    opts *o = c->o;
    dl_refiner **r = &c->refiners[worker];
    dl_status s;
    if (o->cut.refine && !*r && (s = dl_refiner_create(dl_model_info_of(m).device, r)) != DL_OK) return s;
    dl_cutout_options co = o->cut;
    co.keep_mask = c->keep_mask.px ? &c->keep_mask : NULL;
    co.erase_mask = c->erase_mask.px ? &c->erase_mask : NULL;
    co.bg_image = c->bg_image.px ? &c->bg_image : NULL;
    co.stats = o->verbose;
    dl_cutout cut;
    if ((s = dl_cutout_make(photo, logits, C, h, w, &co, *r, &cut)) != DL_OK) {
        dl_error_prefix(strcmp(job->input, "-") ? job->input : "stdin");
        return s;
    }
    s = dl_cutout_write(job->output, &cut, c->format, o->jpeg_quality);
    if (s == DL_OK && o->verbose) describe(job, &cut, photo, w, h, c->folder);
    if (s == DL_OK && cut.missed_points) {
        const size_t k = strlen(job->info);
        snprintf(job->info + k, sizeof job->info - k,
                 "deeplab: rmbg: %s: warning: %d --keep-at point(s) on no object (alpha below 50%% there): "
                 "nothing kept for them\n", job->input, cut.missed_points);
    }
    dl_cutout_free(&cut);
    return s;
}

static dl_status segment_finish(void *vctx, int worker, dl_model *m, pipe_job *job, const dl_image *photo,
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

static void progress(void *vctx, const pipe_job *job, int done, int failed, int total, double elapsed)
{
    run_ctx *c = vctx;
    if (c->bar_shown) fputs("\r\033[K", stderr); /* clear the bar; lines go above it */
    if (job->status != DL_OK) fprintf(stderr, "deeplab: %s\n", job->error);
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
        fprintf(stderr, "deeplab: %s: [%d/%d] %s -> %s (%.2f images/s)\n", c->o->cmd, n, total, job->input,
                job->output, rate);
    }
    fflush(stderr);
}

/* ------------------------------------------------------------------ the command */

static int prepare(opts *o, run_ctx *c, joblist *l)
{
    /* -o DIR/ (a final slash), or an existing folder with several inputs or an input folder:
     * many photos; otherwise one photo to -o FILE (or -), the command as it always was */
    const size_t olen = strlen(o->output);
    const int slash = olen && o->output[olen - 1] == '/';
    int any_dir = 0;
    for (int i = 0; i < o->ninputs; i++) any_dir |= is_dir(o->inputs[i]);
    c->folder = slash || (is_dir(o->output) && (o->ninputs > 1 || any_dir));
    c->tty = isatty(STDERR_FILENO);
    if (!c->folder && o->ninputs > 1)
        return cli_usage(o->cmd, "-o FILE takes one input image; several inputs need -o FOLDER/ (an existing "
                                 "folder, or one to make)%s", "");
    if (!c->folder && any_dir) {
        fprintf(stderr, "deeplab: %s: is a directory, expected a file (for the photos in it: -o FOLDER/)\n",
                o->inputs[0]);
        return DL_ENOINPUT;
    }
    if (o->rmbg && (o->keep_mask || o->erase_mask) && c->folder)
        return cli_usage(o->cmd, "--keep-mask and --erase-mask are painted for one photo: give one input and -o FILE%s",
                         "");
    if (o->save_logits && c->folder) return cli_usage(o->cmd, "--save-logits works with one input only%s", "");
    if (!c->folder) {
        if (is_dir(o->output)) {
            fprintf(stderr, "deeplab: %s: is a directory, expected a file name (to write into it, end it with a "
                            "slash: %s/)\n", o->output, o->output);
            return DL_ECANTCREATE;
        }
        if (same_file(o->inputs[0], o->output))
            return cli_usage(o->cmd, "the output '%s' is the input image; choose another file", o->output);
        if (o->save_logits && same_file(o->inputs[0], o->save_logits))
            return cli_usage(o->cmd, "--save-logits '%s' is the input image; choose another file", o->save_logits);
        c->format = !strcmp(o->output, "-") ? (o->ext ? o->ext : DL_FORMAT_PNG) : o->ext ? o->ext : DL_FORMAT_AUTO;
        if (add_job(l, o->inputs[0], (char *)o->output)) return DL_ENOMEM;
    } else {
        if (!strcmp(o->output, "-")) return cli_usage(o->cmd, "-o - (standard output) takes one input image%s", "");
        if (!is_dir(o->output) && mkdir(o->output, 0777) != 0) { /* DIR/ is made if missing (not its parents) */
            fprintf(stderr, "deeplab: %s: cannot make the folder: %s\n", o->output, strerror(errno));
            return DL_ECANTCREATE;
        }
        c->format = o->ext ? o->ext : DL_FORMAT_PNG;
        int rc = folder_jobs(o, l);
        if (rc) return rc;
    }
    /* JPEG has no alpha: only opaque results */
    const int jpeg = c->format == DL_FORMAT_JPEG ||
                     (c->format == DL_FORMAT_AUTO && dl_format_of_path(o->output) == DL_FORMAT_JPEG);
    if (jpeg && !o->rmbg) return cli_usage(o->cmd, "class maps are written as PNG, not JPEG ('%s')", o->output);
    if (jpeg && o->cut.format == DL_CUTOUT_LABELS)
        return cli_usage(o->cmd, "--format labels is written as PNG, not JPEG ('%s')", o->output);
    if (jpeg && o->cut.format == DL_CUTOUT_RGBA &&
        !(o->cut.background == DL_BG_IMAGE || (o->cut.background == DL_BG_COLOR && o->cut.bg_color[3] == 255)))
        return cli_usage(o->cmd, "'%s': JPEG has no alpha channel: write a .png, or give an opaque --bg-color or "
                                 "--bg-image", o->output);
    /* images every photo shares */
    const struct {
        const char *path;
        dl_image *img;
    } extra[] = {{o->keep_mask, &c->keep_mask}, {o->erase_mask, &c->erase_mask}, {o->bg_image, &c->bg_image}};
    for (int k = 0; k < 3; k++)
        if (extra[k].path) {
            dl_status s = dl_image_read(extra[k].path, extra[k].img);
            if (s != DL_OK) return cli_fail(s);
        }
    return 0;
}

static int run_command(opts *o, dl_model *model, pipe_stats *stats_out)
{
    run_ctx c = {.o = o, .model = model};
    joblist l = {0};
    int rc = prepare(o, &c, &l);
    const int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN) > 0 ? (int)sysconf(_SC_NPROCESSORS_ONLN) : 1;
    /* threads: on the CPU the network uses every core, so one decoder and one encoder; on a GPU the
     * CPU only decodes and encodes: a quarter of the cores decode (~0.1 s per 1080p photo), the
     * rest but one encode (~0.25 s: class map, upsampling, PNG compression) */
    char why[256];
    const int gpu = o->device == DL_DEVICE_CUDA ||
                    (o->device == DL_DEVICE_AUTO && !model && dl_cuda_probe(why, sizeof why) > 0) ||
                    (model && dl_model_info_of(model).device == DL_DEVICE_CUDA);
    int decoders = o->io_threads ? o->io_threads : gpu ? (ncpu / 4 > 1 ? ncpu / 4 : 1) : 1;
    int encoders = o->io_threads ? o->io_threads : gpu ? (ncpu - decoders - 1 > 1 ? ncpu - decoders - 1 : 1) : 1;
    pipe_stats stats = {0};
    (void)dl_voc_palette(); /* built on first use: before the threads that read it */
    if (!rc && l.n > 0) {
        c.refiners = calloc((size_t)encoders, sizeof *c.refiners);
        pipe_config cfg = {.size = o->size, .batch = o->batch, .decoders = decoders, .encoders = encoders,
                           .background_io = !gpu, .ctx = &c, .load = load_model,
                           .finish = o->rmbg ? rmbg_finish : segment_finish, .progress = progress};
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
        fprintf(stderr, "deeplab: %s: %d written", o->cmd, stats.done);
        if (l.skipped) fprintf(stderr, ", %d skipped (already there; --overwrite replaces them)", l.skipped);
        if (stats.failed) fprintf(stderr, ", %d failed", stats.failed);
        fprintf(stderr, " in %.1f s (%.2f images/s", stats.seconds,
                stats.seconds > 0 ? stats.done / stats.seconds : 0.0);
        if (c.own_model) fprintf(stderr, "; model loaded in %.1f s", stats.load_seconds);
        fprintf(stderr, ")\n");
        if (o->verbose && stats.forwards) {
            const int n = stats.done + stats.failed;
            fprintf(stderr, "deeplab: %s: network %.1f s in %d forward passes (%.3f s per photo); per photo on the "
                            "%d decoding threads %.3f s, on the %d encoding threads %.3f s\n",
                    o->cmd, stats.forward_seconds, stats.forwards, stats.forward_seconds / n, decoders,
                    stats.decode_seconds / n, encoders, stats.finish_seconds / (stats.done ? stats.done : 1));
        }
    }
    if (o->verbose) fprintf(stderr, "memory:   peak resident %.0f MB\n", cli_peak_rss_mb());
    for (int k = 0; c.refiners && k < encoders; k++) dl_refiner_free(c.refiners[k]);
    free(c.refiners);
    if (c.own_model) dl_model_free(c.model);
    dl_image_free(&c.keep_mask);
    dl_image_free(&c.erase_mask);
    dl_image_free(&c.bg_image);
    joblist_free(&l);
    if (stats_out) *stats_out = stats;
    return rc;
}

/* ------------------------------------------------------------------ help */

#define RUN_COMMON_HELP                                                                            \
    "  -w, --weights FILE    safetensors weights (default: $DEEPLAB_WEIGHTS, else\n"                \
    "                        " DEFAULT_WEIGHTS ")\n"                                                \
    "  --size N              resize so the shorter side is N pixels before the network\n"          \
    "                        (default 520, as torchvision; 0 = the image's own size)\n"            \
    "  --device D            auto (GPU when there is one), cpu or cuda (default auto)\n"           \
    "  --threads N           CPU threads of the network (default 0 = all cores)\n"                 \
    "  --reference           CPU: run the plain-C reference layers (slow; for checking)\n"         \
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
    "                        GPU most cores encode)\n"

static const char *const segment_help =
    "usage: deeplab segment [options] -o OUT.png IN\n"
    "       deeplab segment [options] -o DIR IN... (files and folders)\n"
    "\n"
    "Writes the class of every pixel as a palette PNG (PASCAL VOC colours) at the input's size.\n"
    "IN: PNG or JPEG (EXIF orientation applied); - reads standard input, -o - writes standard output.\n"
    "\n"
    "  -o, --output FILE     the class map (PNG), required\n"
    "  --save-logits F.npy   also write the logits at network size, float32 (1, classes, H, W)\n"
    RUN_COMMON_HELP CLI_LIMITS_HELP;

static const char *const rmbg_help =
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
    "\n"
    "output:\n"
    "  --format F            rgba (default), mask (the alpha as gray), overlay (the photo tinted by\n"
    "                        class, with a legend), labels (the kept pixels' classes, palette PNG)\n"
    "  --bg-color RRGGBB[AA] composite over this colour (opaque: RGB output, JPEG possible)\n"
    "  --bg-image FILE       composite over this picture, scaled to cover the photo\n"
    "  --crop[=MARGIN]       crop to the subject (every pixel not fully transparent) plus MARGIN px\n"
    "  --jpeg-quality Q      1 to 100 (default 90)\n"
    "  --ext png|jpg         the output type with -o DIR or -o - (default png)\n"
    "\n"
    "network:\n"
    RUN_COMMON_HELP CLI_LIMITS_HELP;

static int list_classes(void)
{
    printf("the 21 classes of the published model (PASCAL VOC), for --classes:\n");
    for (int c = 0; dl_voc_class_name(c); c++) printf("%3d  %s\n", c, dl_voc_class_name(c));
    printf("models with other class counts: use the class numbers\n");
    return 0;
}

static int run_main(const char *cmd, int argc, char **argv, dl_model *model, pipe_stats *stats)
{
    opts o = {.cmd = cmd, .rmbg = !strcmp(cmd, "rmbg")};
    int rc = parse_run_options(&o, argc, argv);
    if (!rc) rc = run_command(&o, model, stats);
    free(o.inputs);
    return rc;
}

int cmd_segment(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(segment_help, stdout), 0;
    return run_main("segment", argc, argv, NULL, NULL);
}

int cmd_rmbg(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(rmbg_help, stdout), 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list-classes")) return list_classes();
    return run_main("rmbg", argc, argv, NULL, NULL);
}

int cmd_rmbg_with_model(int argc, char **argv, dl_model *model, pipe_stats *stats)
{
    return run_main("rmbg", argc, argv, model, stats);
}
