/*
 * cmd_bench.c - `deeplab bench`: end-to-end and per-layer timing.
 *
 * Method (../shared/PERFORMANCE.md): a fresh random input per configuration, warm-up runs first
 * (memory planning, weight upload, first-touch page faults stay out of the numbers), then N
 * timed runs reported as median, p10 and p90. With --layers every layer is timed on its own in
 * further runs, and the table says how far the layers' sum is from the end-to-end median.
 * Achieved FLOP/s are always computed against the nominal work (497.5 GFLOP for ResNet-101 at
 * 520x520), padding taps included, even where a path skips them.
 *
 * On a GPU each row also has the device time (CUDA events around the network, from the input on
 * the device to the outputs on the device: what PyTorch's numbers measure), beside the wall time
 * of dl_forward_outputs with its copies; --output says what comes back (the logits of a 520x520
 * image are 23 MB, their class mass 1 MB). The per-layer table's share of peak divides by the
 * GPU's measured mma.sync rate for the precision (dl_cuda_peak_gflops).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "cuda_device.h"
#include "pipeline.h"

#define MAX_LIST 8

typedef struct bench_opts {
    const char *weights;
    int w, h;
    int batch[MAX_LIST], nbatch;
    const char *backend[MAX_LIST];
    int nbackend;
    const char *precision[MAX_LIST];
    int nprecision;
    dl_device device;
    int runs, warmup, threads, layers, json;
    int output; /* what each forward returns: 0 logits, 1 class mass, 2 labels */
    char *lists[3]; /* the copies split_list cut into items: --batch, --backend, --precision */
    const char *folder; /* --folder DIR: rmbg over a folder against pure inference (cmd_bench_folder.c) */
    int io_threads;
} bench_opts;

static const char *const bench_help =
    "usage: deeplab bench [options]\n"
    "\n"
    "Times the network: end-to-end latency (median, p10, p90 of --runs after --warmup runs) and\n"
    "throughput for every combination of backend, precision and batch; with --layers, every\n"
    "layer's time, achieved rate and share of the total. Without -w it runs on random weights of\n"
    "the right shapes (ResNet-101, 21 classes) and says so: timings do not depend on the values.\n"
    "\n"
    "  -w, --weights FILE    safetensors weights (default: random weights)\n"
    "  --size N | WxH        network input size (default 520, i.e. 520x520)\n"
    "  --batch LIST          images per forward pass, e.g. 1,8 (default 1)\n"
    "  --device D            cpu, cuda or cuda:N (default: cuda when usable, else cpu)\n"
    "  --backend LIST        native (default: the fast path, or on the GPU the engine's kernels),\n"
    "                        reference (CPU plain C), cudnn (GPU: convolutions through cuDNN/cuBLAS)\n"
    "  --precision LIST      fp32 (default); bf16 (the native backend: the GPU's tensor cores, or the\n"
    "                        CPU's fast path with AVX512_BF16); on the GPU tf32 (both backends) and\n"
    "                        fp16 (native); combinations that do not exist (cudnn bf16, cpu tf32)\n"
    "                        are skipped\n"
    "  --output O            what every forward returns and copies back: logits (default, at the\n"
    "                        input size), mass (the foreground probability) or labels (arg-max)\n"
    "  --runs N              timed runs per configuration (default 5)\n"
    "  --warmup N            untimed runs first (default 1)\n"
    "  --threads N           CPU threads (default 0 = all cores)\n"
    "  --layers              per-layer table (in extra profiled runs)\n"
    "  --json                print JSON instead of markdown tables\n"
    "\n"
    "  --folder DIR          instead: `deeplab rmbg` over the photos of DIR (outputs to a temporary\n"
    "                        folder) against pure inference at the first photo's network size\n"
    "                        (--size N is then the shorter side, as for rmbg; first --batch value):\n"
    "                        is decoding and encoding hidden behind the network?\n"
    "  --io-threads N        with --folder: rmbg's decoding/encoding threads (default: rmbg's)\n"
    CLI_LIMITS_HELP;

/* Splits "a,b,c" into up to MAX_LIST items, pointers into a copy kept in *copy (which replaces
 * the previous one: a repeated option's last list wins) until free_lists. */
static int split_list(const char *s, const char **items, char **copy)
{
    free(*copy);
    int n = 0;
    if (!(*copy = strdup(s))) return 0;
    for (char *tok = strtok(*copy, ","); tok && n < MAX_LIST; tok = strtok(NULL, ",")) items[n++] = tok;
    return n;
}

static void free_lists(bench_opts *o)
{
    for (int i = 0; i < 3; i++) free(o->lists[i]);
}

/* fp32 everywhere; bf16 in the native backend (the GPU's tensor cores or the CPU's fast path);
 * tf32 on the GPU (both backends), fp16 on the GPU's native backend. */
static int combination_exists(const char *backend, const char *precision, int gpu)
{
    if (!strcmp(precision, "fp32")) return 1;
    if (!strcmp(precision, "bf16")) return !strcmp(backend, "native");
    if (!gpu || !strcmp(backend, "reference")) return 0;
    return !strcmp(precision, "tf32") || !strcmp(backend, "native");
}

static dl_precision precision_of(const char *name)
{
    return !strcmp(name, "tf32") ? DL_PRECISION_TF32 : !strcmp(name, "fp16") ? DL_PRECISION_FP16
           : !strcmp(name, "bf16") ? DL_PRECISION_BF16 : DL_PRECISION_FP32;
}

/* Will the models run on the GPU? (--device auto: when one is usable, never the emulated one) */
static int on_gpu(dl_device device)
{
    char why[256];
    if (device == DL_DEVICE_CPU) return 0;
    return device == DL_DEVICE_CUDA || (!dl_cuda_emulated() && dl_cuda_probe(why, sizeof why) > 0);
}

static int parse_bench(bench_opts *o, int argc, char **argv)
{
    *o = (bench_opts){.w = 520, .h = 520, .batch = {1}, .nbatch = 1, .backend = {"native"}, .nbackend = 1,
                      .precision = {"fp32"}, .nprecision = 1, .device = DL_DEVICE_AUTO, .runs = 5, .warmup = 1};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int missing = 0, rc;
        if (cli_take_common_option(argc, argv, &i, "bench", &rc)) {
            if (rc) return rc;
        } else if (!strcmp(a, "--layers")) {
            o->layers = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (cli_take_value(argc, argv, &i, "-w", &v, &missing) ||
                   cli_take_value(argc, argv, &i, "--weights", &v, &missing)) {
            if (missing) return cli_usage("bench", "%s needs a file", a);
            o->weights = v;
        } else if (cli_take_value(argc, argv, &i, "--size", &v, &missing)) {
            char tail;
            if (missing || (sscanf(v, "%dx%d%c", &o->w, &o->h, &tail) != 2 &&
                            (cli_parse_int(v, 1, 16384, &o->w) || (o->h = o->w, 0))) ||
                o->w < 1 || o->h < 1 || o->w > 16384 || o->h > 16384)
                return cli_usage("bench", "--size takes N or WxH (1 to 16384), not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--batch", &v, &missing)) {
            const char *items[MAX_LIST];
            o->nbatch = missing ? 0 : split_list(v, items, &o->lists[0]);
            for (int k = 0; k < o->nbatch; k++)
                if (cli_parse_int(items[k], 1, 1024, &o->batch[k])) o->nbatch = 0;
            if (!o->nbatch) return cli_usage("bench", "--batch takes a list like 1,8 (1 to 1024), not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--backend", &v, &missing)) {
            o->nbackend = missing ? 0 : split_list(v, o->backend, &o->lists[1]);
            for (int k = 0; k < o->nbackend; k++)
                if (strcmp(o->backend[k], "native") && strcmp(o->backend[k], "reference") &&
                    strcmp(o->backend[k], "cudnn"))
                    return cli_usage("bench", "unknown backend '%s' (native, reference or cudnn)", o->backend[k]);
            if (!o->nbackend) return cli_usage("bench", "%s needs a list of backends", a);
        } else if (cli_take_value(argc, argv, &i, "--precision", &v, &missing)) {
            o->nprecision = missing ? 0 : split_list(v, o->precision, &o->lists[2]);
            for (int k = 0; k < o->nprecision; k++)
                if (strcmp(o->precision[k], "fp32") && strcmp(o->precision[k], "tf32") && strcmp(o->precision[k], "fp16") &&
                    strcmp(o->precision[k], "bf16"))
                    return cli_usage("bench", "precision '%s' is not available (fp32, tf32, fp16 or bf16)", o->precision[k]);
            if (!o->nprecision) return cli_usage("bench", "%s needs a list of precisions", a);
        } else if (cli_take_value(argc, argv, &i, "--output", &v, &missing)) {
            if (!missing && !strcmp(v, "logits")) o->output = 0;
            else if (!missing && !strcmp(v, "mass")) o->output = 1;
            else if (!missing && !strcmp(v, "labels")) o->output = 2;
            else return cli_usage("bench", "--output takes logits, mass or labels, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--device", &v, &missing)) {
            const int bad = cli_parse_device("bench", missing ? NULL : v, &o->device);
            if (bad) return bad;
        } else if (cli_take_value(argc, argv, &i, "--runs", &v, &missing)) {
            if (missing || cli_parse_int(v, 1, 100000, &o->runs))
                return cli_usage("bench", "--runs takes a number from 1, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--warmup", &v, &missing)) {
            if (missing || cli_parse_int(v, 0, 100000, &o->warmup))
                return cli_usage("bench", "--warmup takes a number from 0, not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--threads", &v, &missing)) {
            if (missing || cli_parse_int(v, 0, 1024, &o->threads))
                return cli_usage("bench", "--threads takes a number from 0 (all cores), not '%s'", missing ? "" : v);
        } else if (cli_take_value(argc, argv, &i, "--folder", &v, &missing)) {
            if (missing) return cli_usage("bench", "%s needs a folder of photos", a);
            o->folder = v;
        } else if (cli_take_value(argc, argv, &i, "--io-threads", &v, &missing)) {
            if (missing || cli_parse_int(v, 1, 256, &o->io_threads))
                return cli_usage("bench", "--io-threads takes a number from 1 to 256, not '%s'", missing ? "" : v);
        } else {
            return cli_usage("bench", "unknown argument '%s'", a);
        }
    }
    /* Combinations that do not exist are skipped, but every backend and precision listed must
     * run in at least one. */
    const int gpu = on_gpu(o->device);
    for (int b = 0; b < o->nbackend; b++) {
        if (!strcmp(o->backend[b], "cudnn") && o->device == DL_DEVICE_CPU)
            return cli_usage("bench", "the %s backend runs on the GPU only, not with --device cpu", "cudnn");
        int runs = 0;
        for (int p = 0; p < o->nprecision; p++) runs += combination_exists(o->backend[b], o->precision[p], gpu || !strcmp(o->backend[b], "cudnn"));
        if (!runs)
            return cli_usage("bench", "the %s backend has none of these precisions %s: add fp32 to --precision", o->backend[b],
                             gpu ? "" : "without a GPU");
    }
    for (int p = 0; p < o->nprecision; p++) {
        int runs = 0;
        for (int b = 0; b < o->nbackend; b++) runs += combination_exists(o->backend[b], o->precision[p], gpu || !strcmp(o->backend[b], "cudnn"));
        if (!runs && !strcmp(o->precision[p], "bf16"))
            return cli_usage("bench", "precision %s needs --backend native (the GPU's tensor cores or the CPU's fast path)",
                             o->precision[p]);
        if (!runs)
            return cli_usage("bench", "precision %s runs on the GPU only (%s)", o->precision[p],
                             strcmp(o->precision[p], "tf32") ? "the native backend" : "native or cudnn backend");
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n samples, nearest rank; sorts v. */
static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void rate_str(char *buf, size_t len, double per_second, const char *unit)
{
    if (per_second >= 1e12) snprintf(buf, len, "%.2f T%s/s", per_second / 1e12, unit);
    else if (per_second >= 1e9) snprintf(buf, len, "%.1f G%s/s", per_second / 1e9, unit);
    else snprintf(buf, len, "%.2f G%s/s", per_second / 1e9, unit);
}

typedef struct result {
    const char *backend, *precision, *path;
    int batch;
    double median, p10, p90, flops, layer_sum;
    double device_median, device_p10, device_p90; /* GPU: the network alone (CUDA events); 0 on the CPU */
    double peak; /* the measured multiply-add peak for this precision, GFLOP/s (CPU: the cores', GPU: mma.sync
                    chains, FFMA for fp32); 0: unknown */
    int gpu;     /* it ran on the GPU */
    dl_layer_info *layers; /* names point into names: the model is freed before printing */
    char (*names)[64];
    int nlayers;
} result;

/* Fills x with a fresh pseudo-random input (values like a normalised image). */
static void random_input(float *x, size_t n, unsigned seed)
{
    uint64_t s = 0x2545f4914f6cdd1dull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 4503599627370496.0 * 4.0 - 2.0);
    }
}

static int run_config(const bench_opts *o, dl_model *m, int batch, result *r)
{
    const dl_model_info info = dl_model_info_of(m);
    const size_t in_n = (size_t)batch * 3 * o->h * o->w, out_n = (size_t)batch * info.num_classes * o->h * o->w;
    const size_t px = (size_t)batch * o->h * o->w;
    float *x = malloc(in_n * sizeof *x), *y = malloc((o->output == 1 ? px : o->output == 2 ? px / 4 + 1 : out_n) * sizeof *y);
    double *t = malloc(sizeof *t * (size_t)o->runs), *td = malloc(sizeof *td * (size_t)o->runs);
    const dl_outputs want = {.logits = o->output == 0 ? y : NULL, .mass = o->output == 1 ? y : NULL,
                             .labels = o->output == 2 ? (uint8_t *)y : NULL};
    if (!x || !y || !t || !td) {
        free(x), free(y), free(t), free(td);
        return cli_error(DL_ENOMEM, "bench: out of memory for a batch of %d at %dx%d", batch, o->w, o->h);
    }
    random_input(x, in_n, (unsigned)batch);
    int rc = 0;
    dl_model_set_profile(m, 0);
    for (int i = 0; i < o->warmup + o->runs && !rc; i++) {
        double t0 = dl_now();
        dl_status s = dl_forward_outputs(m, x, batch, o->h, o->w, &want);
        if (s != DL_OK) rc = cli_fail(s);
        else if (i >= o->warmup) t[i - o->warmup] = dl_now() - t0, td[i - o->warmup] = dl_model_device_seconds(m);
    }
    if (!rc) {
        r->median = quantile(t, o->runs, 0.5);
        r->p10 = quantile(t, o->runs, 0.1);
        r->p90 = quantile(t, o->runs, 0.9);
        if (info.device == DL_DEVICE_CUDA) {
            r->device_median = quantile(td, o->runs, 0.5);
            r->device_p10 = quantile(td, o->runs, 0.1);
            r->device_p90 = quantile(td, o->runs, 0.9);
        }
        r->nlayers = dl_model_layer_count(m);
        r->flops = 0;
        for (int i = 0; i < r->nlayers; i++) r->flops += dl_model_layer(m, i).flops;
    }
    if (!rc && o->layers) {
        /* per layer: the median over the profiled runs of each layer's own time */
        double *lt = malloc(sizeof *lt * (size_t)r->nlayers * o->runs);
        r->layers = calloc((size_t)r->nlayers, sizeof *r->layers);
        r->names = calloc((size_t)r->nlayers, sizeof *r->names);
        if (!lt || !r->layers || !r->names) rc = DL_ENOMEM;
        dl_model_set_profile(m, 1);
        for (int i = 0; i < o->runs && !rc; i++) {
            dl_status s = dl_forward_outputs(m, x, batch, o->h, o->w, &want);
            if (s != DL_OK) rc = cli_fail(s);
            for (int l = 0; l < r->nlayers && !rc; l++) lt[(size_t)l * o->runs + i] = dl_model_layer(m, l).seconds;
        }
        r->layer_sum = 0;
        for (int l = 0; l < r->nlayers && !rc; l++) {
            r->layers[l] = dl_model_layer(m, l);
            snprintf(r->names[l], sizeof r->names[l], "%s", r->layers[l].name);
            r->layers[l].name = r->names[l];
            r->layers[l].seconds = quantile(lt + (size_t)l * o->runs, o->runs, 0.5);
            r->layer_sum += r->layers[l].seconds;
        }
        dl_model_set_profile(m, 0);
        free(lt);
    }
    free(x);
    free(y);
    free(t);
    free(td);
    return rc;
}

static void print_layers_md(const result *r)
{
    printf("\n### layers: %s %s, batch %d (median of the profiled runs)\n\n", r->backend, r->precision, r->batch);
    if (r->peak > 0)
        printf(r->gpu ? "of peak: the nominal rate over the %s peak measured on this GPU, %.4g GFLOP/s (mma.sync chains;\n"
                        "FFMA for fp32); skipped padding taps are credited, so a dilated layer can pass 100%%\n\n"
                      : "of peak: the nominal rate over the %s peak measured on these cores, %.4g GFLOP/s (Winograd\n"
                        "and skipped padding taps do less work than they are credited, so it can pass 100%%)\n\n",
               r->precision, r->peak);
    printf("| # | layer | op | kernel | input | output | k/s/d | GFLOP | ms | rate | of peak | share |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < r->nlayers; i++) {
        const dl_layer_info *L = &r->layers[i];
        char in[48], out[48], ksd[24] = "", rate[32];
        snprintf(in, sizeof in, "%dx%dx%d", L->in_c, L->in_h, L->in_w);
        snprintf(out, sizeof out, "%dx%dx%d", L->out_c, L->out_h, L->out_w);
        if (L->k) snprintf(ksd, sizeof ksd, "%d/%d/%d", L->k, L->stride, L->dilation);
        if (L->flops > 0) rate_str(rate, sizeof rate, L->seconds > 0 ? L->flops / L->seconds : 0, "FLOP");
        else rate_str(rate, sizeof rate, L->seconds > 0 ? L->bytes / L->seconds : 0, "B");
        char of_peak[16] = "";
        if (L->flops > 0 && r->peak > 0 && L->seconds > 0)
            snprintf(of_peak, sizeof of_peak, "%.0f%%", 100.0 * L->flops / L->seconds / 1e9 / r->peak);
        printf("| %d | %s | %s | %s | %s | %s | %s | %.2f | %.3f | %s | %s | %.1f%% |\n", i + 1, L->name, L->op,
               L->kernel ? L->kernel : "", in, out, ksd, L->flops / 1e9, 1e3 * L->seconds, rate, of_peak,
               r->layer_sum > 0 ? 100.0 * L->seconds / r->layer_sum : 0.0);
    }
    printf("\nlayers sum to %.1f ms, %.1f%% of the end-to-end median %.1f ms\n", 1e3 * r->layer_sum,
           100.0 * r->layer_sum / r->median, 1e3 * r->median);
}

static void print_json(const bench_opts *o, const dl_model_info *info, const char *model, const result *res, int n)
{
    printf("{\n  \"commit\": \"%s\",\n  \"cpu\": \"%s\",\n  \"model\": \"%s\",\n  \"depth\": %d,\n  \"classes\": %d,\n",
           cli_commit(), cli_cpu_name(), model, info->depth, info->num_classes);
    printf("  \"device\": \"%s\",\n  \"threads\": %d,\n  \"width\": %d,\n  \"height\": %d,\n  \"runs\": %d,\n  \"warmup\": %d,\n",
           info->device != DL_DEVICE_CUDA ? "cpu" : dl_cuda_emulated() ? "cuda-emulated" : "cuda", info->threads, o->w, o->h, o->runs, o->warmup);
    printf("  \"results\": [\n");
    for (int i = 0; i < n; i++) {
        const result *r = &res[i];
        printf("    {\"backend\": \"%s\", \"precision\": \"%s\", \"path\": \"%s\", \"batch\": %d, \"median_ms\": %.4f, "
               "\"p10_ms\": %.4f, \"p90_ms\": %.4f, \"images_per_s\": %.4f, \"nominal_gflop\": %.3f",
               r->backend, r->precision, r->path, r->batch, 1e3 * r->median, 1e3 * r->p10, 1e3 * r->p90,
               r->batch / r->median, r->flops / 1e9);
        if (r->device_median > 0)
            printf(", \"device_median_ms\": %.4f, \"device_p10_ms\": %.4f, \"device_p90_ms\": %.4f, "
                   "\"device_images_per_s\": %.4f", 1e3 * r->device_median, 1e3 * r->device_p10, 1e3 * r->device_p90,
                   r->batch / r->device_median);
        printf(", \"output\": \"%s\"", o->output == 0 ? "logits" : o->output == 1 ? "mass" : "labels");
        if (r->peak > 0) printf(", \"peak_gflops\": %.1f", r->peak);
        if (r->layers) {
            printf(", \"layer_sum_ms\": %.4f, \"layers\": [\n", 1e3 * r->layer_sum);
            for (int l = 0; l < r->nlayers; l++) {
                const dl_layer_info *L = &r->layers[l];
                printf("      {\"name\": \"%s\", \"op\": \"%s\", \"kernel\": \"%s\", \"in\": [%d, %d, %d], \"out\": [%d, %d, %d], "
                       "\"k\": %d, \"stride\": %d, \"dilation\": %d, \"gflop\": %.6f, \"mbytes\": %.4f, \"ms\": %.4f}%s\n",
                       L->name, L->op, L->kernel ? L->kernel : "", L->in_c, L->in_h, L->in_w, L->out_c, L->out_h, L->out_w, L->k, L->stride,
                       L->dilation, L->flops / 1e9, L->bytes / 1e6, 1e3 * L->seconds, l + 1 < r->nlayers ? "," : "");
            }
            printf("    ]");
        }
        printf("}%s\n", i + 1 < n ? "," : "");
    }
    printf("  ]\n}\n");
}

int cmd_bench(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(bench_help, stdout), 0;
    bench_opts o;
    int rc = parse_bench(&o, argc, argv);
    if (!rc && o.folder) {
        if (o.w != o.h) rc = cli_usage("bench", "--folder takes --size N, the shorter side of the network input");
        else rc = bench_folder(o.folder, o.weights, o.device, o.threads, o.w, o.batch[0], o.runs, o.warmup,
                               o.io_threads, o.json);
        free_lists(&o);
        return rc;
    }
    const int nres = o.nbackend * o.nprecision * o.nbatch;
    result *res = rc ? NULL : calloc((size_t)nres, sizeof *res);
    if (!rc && !res) rc = DL_ENOMEM;
    if (rc) {
        free_lists(&o);
        return rc;
    }
    dl_model_info info = {0};
    const int gpu = on_gpu(o.device);
    const char *model = o.weights ? o.weights : "random weights (no -w given: timings only)";
    int k = 0;
    for (int b = 0; b < o.nbackend && !rc; b++)
        for (int p = 0; p < o.nprecision && !rc; p++) {
            if (!combination_exists(o.backend[b], o.precision[p], gpu || !strcmp(o.backend[b], "cudnn"))) {
                fprintf(stderr, "bench: %s %s: skipped (no such combination%s)\n", o.backend[b], o.precision[p],
                        gpu ? "" : " without a GPU");
                continue;
            }
            dl_options mo = {.device = o.device, .threads = o.threads, .reference = !strcmp(o.backend[b], "reference"),
                             .backend = !strcmp(o.backend[b], "cudnn") ? DL_BACKEND_CUDNN : DL_BACKEND_NATIVE,
                             .precision = precision_of(o.precision[p])};
            if (mo.reference && o.device == DL_DEVICE_AUTO) mo.device = DL_DEVICE_CPU;
            dl_model *m = NULL;
            if (o.weights) rc = cli_load_model(o.weights, &mo, &m);
            else if ((rc = dl_model_random(101, 21, 1, &mo, &m)) != DL_OK) rc = cli_fail(rc);
            if (rc) break;
            info = dl_model_info_of(m);
            if (mo.reference && info.device != DL_DEVICE_CPU) {
                dl_model_free(m);
                rc = cli_usage("bench", "the %s backend runs on the CPU only", "reference");
                break;
            }
            for (int n = 0; n < o.nbatch && !rc; n++, k++) {
                res[k] = (result){.backend = o.backend[b], .precision = o.precision[p], .path = info.path,
                                  .batch = o.batch[n]};
                if (!o.json)
                    fprintf(stderr, "bench: %s %s batch %d: %d warm-up + %d timed runs%s...\n", o.backend[b],
                            o.precision[p], o.batch[n], o.warmup, o.runs, o.layers ? " + profiled runs" : "");
                res[k].gpu = info.device == DL_DEVICE_CUDA;
                if (o.layers) res[k].peak = res[k].gpu ? dl_cuda_peak_gflops(mo.precision)
                                                       : dl_cpu_peak_gflops(mo.precision) * info.threads;
                rc = run_config(&o, m, o.batch[n], &res[k]);
            }
            dl_model_free(m);
        }
    if (!rc && o.json) print_json(&o, &info, model, res, k);
    else if (!rc) {
        printf("## deeplab bench\n\n");
        printf("- model: DeepLabV3-ResNet%d, %d classes, %s\n", info.depth, info.num_classes, model);
        if (info.device == DL_DEVICE_CUDA) printf("- device: %s\n", dl_cuda_label());
        else printf("- device: cpu: %s, %d threads\n", cli_cpu_name(), info.threads);
        printf("- input %dx%d, %d warm-up + %d timed runs per row; commit %s\n", o.w, o.h, o.warmup, o.runs, cli_commit());
        printf("- rate = nominal FLOPs (padding taps included: %.1f GFLOP per image) / median time\n\n",
               res[0].flops / res[0].batch / 1e9);
        const int dev = info.device == DL_DEVICE_CUDA;
        if (dev)
            printf("- output: %s copied back; device ms: the network alone (CUDA events, input and outputs on the\n"
                   "  device), wall ms: dl_forward_outputs with its copies\n\n",
                   o.output == 0 ? "logits" : o.output == 1 ? "class mass" : "labels");
        printf("| backend | path | precision | batch | median ms | p10 ms | p90 ms | images/s | rate |%s\n",
               dev ? " device ms | device images/s | device rate |" : "");
        printf("|---|---|---|---|---|---|---|---|---|%s\n", dev ? "---|---|---|" : "");
        for (int i = 0; i < k; i++) {
            char rate[32], drate[32] = "";
            rate_str(rate, sizeof rate, res[i].flops / res[i].median, "FLOP");
            if (res[i].device_median > 0) rate_str(drate, sizeof drate, res[i].flops / res[i].device_median, "FLOP");
            printf("| %s | %s | %s | %d | %.3f | %.3f | %.3f | %.2f | %s |", res[i].backend, res[i].path,
                   res[i].precision, res[i].batch, 1e3 * res[i].median, 1e3 * res[i].p10, 1e3 * res[i].p90,
                   res[i].batch / res[i].median, rate);
            if (dev)
                printf(" %.3f | %.1f | %s |", 1e3 * res[i].device_median,
                       res[i].device_median > 0 ? res[i].batch / res[i].device_median : 0.0, drate);
            printf("\n");
        }
        for (int i = 0; i < k; i++)
            if (res[i].layers) print_layers_md(&res[i]);
    }
    for (int i = 0; i < nres; i++) {
        free(res[i].layers);
        free(res[i].names);
    }
    free(res);
    free_lists(&o);
    return rc;
}
