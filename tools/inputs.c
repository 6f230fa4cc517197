/* inputs.c - listing the photos of a command and naming their outputs. See inputs.h. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "inputs.h"

int input_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b) && strcmp(a, "-")) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int input_is_dir(const char *path)
{
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_photo_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return name[0] != '.' && dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int input_list_folder(const char *dir, char ***paths)
{
    *paths = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    int n = 0, cap = 0;
    const size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_photo_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, sizeof *nn * (size_t)cap);
            if (!nn) break;
            names = nn;
        }
        const size_t len = dl + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) break;
        snprintf(names[n], len, "%s%s%s", dir, sep, e->d_name);
        if (input_is_dir(names[n])) free(names[n]);
        else n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, by_name);
    *paths = names;
    return n;
}

/* ------------------------------------------------------------------ jobs */

static char *keep_string(joblist *l, char *s)
{
    if (!s) return NULL;
    if (l->nstrings == l->strings_cap) {
        l->strings_cap = l->strings_cap ? 2 * l->strings_cap : 64;
        char **p = realloc(l->strings, sizeof *p * (size_t)l->strings_cap);
        if (!p) return free(s), NULL;
        l->strings = p;
    }
    return l->strings[l->nstrings++] = s;
}

void joblist_free(joblist *l)
{
    for (int i = 0; i < l->nstrings; i++) free(l->strings[i]);
    free(l->strings);
    free(l->jobs);
}

int joblist_add(joblist *l, const char *input, char *output)
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

/* Two inputs must not share an output, and no output may be an input: sorted, so that a folder
 * of many thousand photos is checked in n log n. */
static int check_outputs(const char *cmd, const joblist *l)
{
    pipe_job *sorted = malloc(sizeof *sorted * (size_t)(l->n ? l->n : 1));
    file_id *ids = malloc(sizeof *ids * (size_t)(l->n ? l->n : 1));
    int rc = sorted && ids ? 0 : DL_ENOMEM, nids = 0;
    if (!rc) {
        memcpy(sorted, l->jobs, sizeof *sorted * (size_t)l->n);
        qsort(sorted, (size_t)l->n, sizeof *sorted, by_output);
        for (int j = 1; j < l->n && !rc; j++)
            if (!strcmp(sorted[j - 1].output, sorted[j].output))
                rc = cli_usage(cmd, "two inputs would both be written to '%s'; rename one", sorted[j].output);
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
                rc = cli_usage(cmd, "the output '%s' would be an input image; choose another folder",
                               l->jobs[j].output);
        }
    }
    free(sorted);
    free(ids);
    return rc;
}

int input_shard_of(const char *path, int shards)
{
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return shards > 1 ? (int)(h % (uint64_t)shards) : 0;
}

int input_folder_jobs(joblist *l, const char *cmd, const char *const *inputs, int ninputs, const char *dir,
                      const char *ext, int overwrite)
{
    for (int i = 0; i < ninputs; i++) {
        const char *in = inputs[i];
        if (!strcmp(in, "-")) return cli_usage(cmd, "- (standard input) works with one input and -o FILE only");
        if (!input_is_dir(in)) {
            char *out = keep_string(l, output_name(dir, in, ext));
            if (!out || joblist_add(l, in, out)) return DL_ENOMEM;
            continue;
        }
        char **names;
        const int n = input_list_folder(in, &names);
        if (n < 0) return cli_error(DL_ENOINPUT, "%s: cannot read the folder: %s", in, strerror(errno));
        for (int k = 0; k < n; k++) {
            char *path = keep_string(l, names[k]);
            char *out = path ? keep_string(l, output_name(dir, path, ext)) : NULL;
            if (!out || joblist_add(l, path, out)) {
                for (int m = k + 1; m < n; m++) free(names[m]);
                free(names);
                return DL_ENOMEM;
            }
        }
        free(names);
    }
    if (l->n == 0)
        return cli_error(DL_ENOINPUT, "%s: no PNG or JPEG photo (.png, .jpg, .jpeg) in the input folder(s)", cmd);
    int rc = check_outputs(cmd, l);
    if (rc) return rc;
    l->total = l->n;
    if (l->shards > 1) { /* the other shards' photos are theirs */
        int k = 0;
        for (int j = 0; j < l->n; j++)
            if (input_shard_of(l->jobs[j].input, l->shards) == l->shard) l->jobs[k++] = l->jobs[j];
        l->n = k;
    }
    if (!overwrite) { /* outputs already there are kept: those jobs move behind the others */
        pipe_job *skipped = malloc(sizeof *skipped * (size_t)(l->n ? l->n : 1));
        if (!skipped) return DL_ENOMEM;
        int k = 0;
        for (int j = 0; j < l->n; j++) {
            struct stat st;
            if (stat(l->jobs[j].output, &st) == 0) skipped[l->skipped++] = l->jobs[j];
            else l->jobs[k++] = l->jobs[j];
        }
        memcpy(l->jobs + k, skipped, sizeof *skipped * (size_t)l->skipped);
        free(skipped);
        l->n = k;
    }
    return 0;
}

static int by_string(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int input_remove_stale_temps(const joblist *l, const char *dir)
{
    const int n = l->n + l->skipped;
    const char **names = malloc(sizeof *names * (size_t)(n ? n : 1));
    DIR *d = names && n ? opendir(dir) : NULL;
    if (!d) return free(names), 0;
    for (int j = 0; j < n; j++) { /* the outputs' file names, sorted */
        const char *slash = strrchr(l->jobs[j].output, '/');
        names[j] = slash ? slash + 1 : l->jobs[j].output;
    }
    qsort(names, (size_t)n, sizeof *names, by_string);
    const size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *tmp = e->d_name[0] == '.' ? strstr(e->d_name, ".tmp-") : NULL;
        while (tmp && strstr(tmp + 1, ".tmp-")) tmp = strstr(tmp + 1, ".tmp-"); /* the last one */
        if (!tmp || tmp == e->d_name || strlen(tmp + 5) != 10) continue;
        char name[512];
        const size_t len = (size_t)(tmp - e->d_name) - 1;
        if (len == 0 || len >= sizeof name) continue;
        memcpy(name, e->d_name + 1, len);
        name[len] = 0;
        const char *key = name;
        if (!bsearch(&key, names, (size_t)n, sizeof *names, by_string)) continue;
        char path[4608];
        if ((size_t)snprintf(path, sizeof path, "%s%s%s", dir, sep, e->d_name) < sizeof path && unlink(path) == 0)
            removed++;
    }
    closedir(d);
    free(names);
    return removed;
}
