/*
 * cmd_bench_folder.c - `deeplab bench --folder DIR`: is the I/O of a folder run hidden behind
 * the network?
 *
 *   1. pure inference: the network alone at the network size of the folder's first photo
 *      (dl_input_size with --size), --warmup then --runs timed dl_forward calls of --batch
 *      images on a fixed input: median seconds per image;
 *   2. the folder: `deeplab rmbg -o TMP/ --overwrite --size N --batch B DIR` on the same model,
 *      the same code path as the command (decoding, refinement, encoding, writing PNGs): wall
 *      time from the first decode to the last write, model load excluded;
 *   3. the ratio of the two throughputs (photos/s of the folder run over photos/s of pure
 *      inference; the bar on a GPU: 80%), and the folder's time over the sum of the
 *      inference times of its photos (photos x median; on a CPU: within 10%).
 * The outputs go to a temporary folder, removed afterwards. Photos of other sizes than the
 * first run through the network at their own size, so use a folder of photos of one size.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "cuda_device.h"
#include "inputs.h"
#include "pipeline.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The first photo of the folder (inputs.h), what rmbg takes first too; NULL if none. */
static char *first_photo(const char *dir)
{
    char **paths, *first = NULL;
    const int n = input_list_folder(dir, &paths);
    for (int i = 0; i < n; i++) {
        if (i == 0) first = paths[i];
        else free(paths[i]);
    }
    free(paths);
    return first;
}

static void remove_outputs(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    if (d) closedir(d);
    rmdir(dir);
}

int bench_folder(const char *folder, const char *weights, dl_device device, int threads, int size, int batch,
                 int runs, int warmup, int io_threads, int json)
{
    /* the network size of the first photo */
    char *first = first_photo(folder);
    if (!first) return cli_error(DL_ENOINPUT, "%s: no PNG or JPEG photo in this folder", folder);
    dl_image img;
    dl_status s = dl_image_read(first, &img);
    if (s != DL_OK) {
        free(first);
        return cli_fail(s);
    }
    int nw, nh;
    const int pw = img.w, ph = img.h;
    dl_input_size(pw, ph, size, &nw, &nh);

    dl_options mo = {.device = device, .threads = threads};
    dl_model *m = NULL;
    int rc = weights ? cli_load_model(weights, &mo, &m) : (int)dl_model_random(101, 21, 1, &mo, &m);
    if (rc && !weights) cli_fail((dl_status)rc);
    const dl_model_info info = rc ? (dl_model_info){0} : dl_model_info_of(m);

    /* 1. pure inference on the photo's own preprocessed input, batch copies of it */
    double *t = calloc((size_t)runs, sizeof *t), median = 0;
    float *x1 = NULL, *x = NULL, *y = NULL;
    if (!rc) {
        int w2, h2;
        s = dl_preprocess(&img, size, &x1, &w2, &h2);
        const size_t in_n = (size_t)3 * nh * nw, out_n = (size_t)info.num_classes * nh * nw;
        x = s == DL_OK ? malloc(sizeof(float) * in_n * batch) : NULL;
        y = x ? malloc(sizeof(float) * out_n * batch) : NULL;
        if (s != DL_OK) rc = cli_fail(s);
        else if (!t || !y) rc = DL_ENOMEM;
        for (int b = 0; !rc && b < batch; b++) memcpy(x + in_n * b, x1, sizeof(float) * in_n);
        if (!json && !rc)
            fprintf(stderr, "bench: pure inference at %dx%d, batch %d: %d warm-up + %d timed runs...\n", nw, nh, batch,
                    warmup, runs);
        for (int i = 0; !rc && i < warmup + runs; i++) {
            const double t0 = dl_now();
            if ((s = dl_forward(m, x, batch, nh, nw, y)) != DL_OK) rc = cli_fail(s);
            else if (i >= warmup) t[i - warmup] = (dl_now() - t0) / batch;
        }
        if (!rc) {
            qsort(t, (size_t)runs, sizeof *t, cmp_double);
            median = t[runs / 2];
        }
    }
    free(x1), free(x), free(y), free(t);
    dl_image_free(&img);

    /* 2. the folder through rmbg */
    char tmp[] = "/tmp/deeplab-bench-XXXXXX";
    pipe_stats st = {0};
    if (!rc && !mkdtemp(tmp))
        rc = cli_error(DL_ECANTCREATE, "bench: cannot make a temporary folder: %s", strerror(errno));
    if (!rc) {
        char out[64], sz[16], bt[16], io[16];
        snprintf(out, sizeof out, "%s/", tmp);
        snprintf(sz, sizeof sz, "%d", size);
        snprintf(bt, sizeof bt, "%d", batch);
        snprintf(io, sizeof io, "%d", io_threads);
        char *args[12] = {"rmbg", "-o", out, "--overwrite", "--size", sz, "--batch", bt};
        int nargs = 8;
        if (io_threads > 0) { /* else the command's default */
            args[nargs++] = "--io-threads";
            args[nargs++] = io;
        }
        args[nargs++] = (char *)folder;
        if (!json) fprintf(stderr, "bench: rmbg over %s...\n", folder);
        rc = cmd_rmbg_with_model(nargs, args, m, &st);
        remove_outputs(tmp);
    }

    /* 3. the verdict */
    if (!rc) {
        const int n = st.done;
        const double infer_rate = median > 0 ? 1.0 / median : 0, folder_rate = st.seconds > 0 ? n / st.seconds : 0;
        const double ratio = infer_rate > 0 ? folder_rate / infer_rate : 0;
        const double over = median > 0 ? st.seconds / (n * median) : 0;
        const char *dev = info.device != DL_DEVICE_CUDA ? "cpu" : dl_cuda_emulated() ? "cuda-emulated" : "cuda";
        if (json) {
            printf("{\n  \"commit\": \"%s\",\n  \"cpu\": \"%s\",\n  \"device\": \"%s\",\n  \"threads\": %d,\n",
                   cli_commit(), cli_cpu_name(), dev, info.threads);
            printf("  \"model\": \"%s\",\n  \"folder\": \"%s\",\n  \"photos\": %d,\n  \"photo_size\": [%d, %d],\n",
                   weights ? weights : "random ResNet-101", folder, n, pw, ph);
            printf("  \"network_size\": [%d, %d],\n  \"batch\": %d,\n  \"runs\": %d,\n", nw, nh, batch, runs);
            printf("  \"inference_median_s_per_image\": %.6f,\n  \"inference_images_per_s\": %.4f,\n", median,
                   infer_rate);
            printf("  \"folder_seconds\": %.4f,\n  \"folder_images_per_s\": %.4f,\n", st.seconds, folder_rate);
            printf("  \"folder_forward_seconds\": %.4f,\n", st.forward_seconds);
            printf("  \"decode_seconds_per_photo\": %.4f,\n  \"finish_seconds_per_photo\": %.4f,\n",
                   n ? st.decode_seconds / n : 0.0, n ? st.finish_seconds / n : 0.0);
            printf("  \"throughput_ratio\": %.4f,\n  \"folder_over_inference_sum\": %.4f\n}\n", ratio, over);
        } else {
            printf("## deeplab bench --folder\n\n");
            printf("- model: %s; device: %s", weights ? weights : "random ResNet-101, 21 classes", dev);
            if (info.device != DL_DEVICE_CUDA) printf(" (%s, %d threads)", cli_cpu_name(), info.threads);
            printf("; commit %s\n", cli_commit());
            printf("- %d photos of %dx%d from %s, network input %dx%d (--size %d), batch %d\n\n", n, pw, ph, folder,
                   nw, nh, size, batch);
            printf("| | seconds | photos/s |\n|---|---|---|\n");
            printf("| pure inference (median of %d runs, per photo) | %.3f | %.3f |\n", runs, median, infer_rate);
            printf("| inference, summed over the %d photos | %.2f | |\n", n, n * median);
            printf("| rmbg over the folder (wall; model load excluded) | %.2f | %.3f |\n", st.seconds, folder_rate);
            printf("| ... of which dl_forward inside the run | %.2f | |\n", st.forward_seconds);
            printf("| per photo, on the decoder threads (read, decode, resize) | %.3f | |\n",
                   n ? st.decode_seconds / n : 0.0);
            printf("| per photo, on the encoder threads (cut-out, refine, PNG, write) | %.3f | |\n\n",
                   n ? st.finish_seconds / n : 0.0);
            printf("folder throughput / inference throughput: %.1f%% (GPU bar: >= 80%%)\n", 100 * ratio);
            printf("folder time / sum of inference times: %.3f (CPU bar: <= 1.10)\n", over);
        }
    }
    dl_model_free(m);
    free(first);
    return rc;
}
