/* cli.c - helpers shared by the deeplab commands. See cli.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

int cli_fail(dl_status s)
{
    fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return (int)s;
}

int cli_usage(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "deeplab: %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see deeplab %s --help)\n", cmd);
    return DL_EUSAGE;
}

double cli_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident memory of this program. VmHWM, not getrusage's ru_maxrss: Linux carries the
 * parent's high-water mark into ru_maxrss across fork and exec, so a deeplab started by a big
 * process (a Python test holding a torch model) would report the parent's peak. */
double cli_peak_rss_mb(void)
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

int cli_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cli_take_value(int argc, char **argv, int *i, const char *name, const char **value, int *missing)
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

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

int cli_load_model(const char *path, dl_device device, int threads, dl_model **m)
{
    dl_options mo = {device, threads};
    dl_status s = dl_model_load(path, &mo, m);
    if (s == DL_ENOINPUT && !strcmp(path, DEFAULT_WEIGHTS))
        fprintf(stderr, "deeplab: %s (get the weights with `make weights`, or pass -w FILE)\n", dl_last_error());
    else if (s != DL_OK)
        fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return (int)s;
}

