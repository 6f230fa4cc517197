/*
 * fuzz_cli.c - the commands' option parsing: `deeplab CMD ARGS...` with ARGS from the input
 * (NUL-separated, at most 64), CMD picked by the first byte (segment, rmbg, info, convert,
 * bench). Checks: no crash, no leak, and the exit status is one of the documented ones.
 *
 * Nothing outside a fresh empty folder can be touched: the run happens in one, DEEPLAB_WEIGHTS
 * is unset, '/' in arguments becomes '_' and standard input is empty, so every file named is
 * missing (or "." / "..", folders, or "-", no data), and a command fails at its first input
 * before any output is made. `bench` would
 * run the network after a good parse, so its arguments always end with an unknown option
 * (twice: the first may be taken as the value of the option before it).
 * Run it with -close_fd_mask=3: the commands print usage errors and help texts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "weights.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/deeplab-fuzz-cli-XXXXXX";

static void remove_dir(void) { rmdir(dir); } /* best effort: it is empty unless a run made a folder */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("fuzz_cli: empty working folder");
        abort();
    }
    atexit(remove_dir);
    unsetenv("DEEPLAB_WEIGHTS");
    if (!freopen("/dev/null", "r", stdin)) abort(); /* "-" names standard input */
    return 0;
}

static int run(int cmd, int argc, char **argv)
{
    switch (cmd) {
    case 0: return cmd_segment(argc, argv);
    case 1: return cmd_rmbg(argc, argv);
    case 2: return cmd_info(argc, argv);
    case 3: return cmd_convert(argc, argv);
    default: return cmd_bench(argc, argv);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"segment", "rmbg", "info", "convert", "bench"};
    if (size < 1 || size > 4096) return 0;
    int cmd = data[0] % 5;
    char *copy = malloc(size); /* data[1..size) plus a final NUL */
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = 0;
    for (size_t i = 0; i + 1 < size; i++)
        if (copy[i] == '/') copy[i] = '_';
    char *argv[MAX_ARGS + 4];
    int argc = 0;
    argv[argc++] = (char *)names[cmd];
    for (char *p = copy; p < copy + size && argc < MAX_ARGS + 1; p += strlen(p) + 1) argv[argc++] = p;
    if (cmd == 4) {
        argv[argc++] = "--fuzz-stop";
        argv[argc++] = "--fuzz-stop";
    }
    argv[argc] = NULL;
    /* Each run starts from the default limits, as a new process would. */
    dl_set_image_limits(0, 0);
    dl_set_png_chunk_limit(0);
    dl_set_jpeg_scan_limit(0);
    dl_set_safetensors_limit(0);
    dl_set_pickle_limits(0, 0, 0);
    int rc = run(cmd, argc, argv);
    free(copy);
    /* 73: an output named "." or ".." is refused before any input is read. */
    if (rc != 0 && rc != DL_EUSAGE && rc != DL_EDATA && rc != DL_ENOINPUT && rc != DL_EUNAVAILABLE &&
        rc != DL_ECANTCREATE) {
        fprintf(stderr, "fuzz_cli: %s exited with %d\n", names[cmd], rc);
        abort();
    }
    return 0;
}
