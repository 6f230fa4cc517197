/* cli.h - what the deeplab commands share: errors, option parsing, loading weights, facts about
 * the build and the machine. */
#ifndef DL_CLI_H
#define DL_CLI_H

#include "deeplab.h"

#define DEFAULT_WEIGHTS "weights/deeplabv3_resnet101.safetensors"
#define DEEPLAB_VERSION "0.1.0"

/* The one way the commands report: a line "deeplab: <formatted>" on stderr. cli_error returns
 * s (the exit status), cli_fail reports dl_last_error(), and cli_usage writes
 * "deeplab: CMD: <formatted> (see deeplab CMD --help)" and returns DL_EUSAGE (64). */
void cli_say(const char *fmt, ...) DL_PRINTF(1, 2);
int cli_error(dl_status s, const char *fmt, ...) DL_PRINTF(2, 3);
int cli_fail(dl_status s);
int cli_usage(const char *cmd, const char *fmt, ...) DL_PRINTF(2, 3);
/* 1 if -h or --help is among the arguments. */
int cli_wants_help(int argc, char **argv);
/* Parses a whole number in [lo, hi]; -1 on error. */
int cli_parse_int(const char *s, long lo, long hi, int *out);
/* If argv[*i] is option `name` ("--name V" or "--name=V"), stores V (or sets *missing) and returns 1. */
int cli_take_value(int argc, char **argv, int *i, const char *name, const char **value, int *missing);
/* Options every command accepts: the limits on untrusted input below. If argv[*i] is one,
 * consumes it (and its value), sets *rc to 0 or a usage exit status, and returns 1. */
int cli_take_common_option(int argc, char **argv, int *i, const char *cmd, int *rc);
/* Their --help text, for every command's help (a blank line, then one line per option). */
#define CLI_LIMITS_HELP                                                                            \
    "\n"                                                                                           \
    "limits on untrusted files (a file over one is refused with exit status 65):\n"                \
    "  --max-pixels N          largest image, width x height (default 100000000)\n"                \
    "  --max-side N            largest image width or height (default 65535)\n"                    \
    "  --max-png-chunk BYTES   largest PNG metadata chunk: text, ICC, EXIF (default 8388608)\n"    \
    "  --max-jpeg-scans N      most scans of a progressive JPEG (default 500)\n"                   \
    "  --max-header-bytes B    largest safetensors header (default 100000000)\n"                   \
    "  --max-pickle-bytes B    largest pickle in a .pth checkpoint (default 1073741824)\n"         \
    "  --max-pickle-memo N     most memo entries of a pickle (default 16777216)\n"                 \
    "  --max-pickle-stack N    deepest pickle stack (default 1048576)\n"
/* --device V (V NULL: missing): auto, cpu, cuda, or cuda:N, which pins this process to GPU N
 * (CUDA_VISIBLE_DEVICES). 0, or the usage status after reporting. */
int cli_parse_device(const char *cmd, const char *v, dl_device *device);
/* Loads weights; on failure prints the error (with a hint for the default path) and returns the status. */
int cli_load_model(const char *path, const dl_options *opt, dl_model **m);

const char *cli_commit(void);   /* the git commit the binary was built from ("-dirty" if modified) */
const char *cli_cpu_name(void); /* the CPU's model name */
double cli_peak_rss_mb(void); /* this process's peak resident memory */
/* Appends s to buf (capacity cap, NUL-terminated) as a JSON string, with quotes (bytes that are
 * not UTF-8 become '?'). */
void json_string(char *buf, size_t cap, const char *s);

int cmd_segment(int argc, char **argv);
int cmd_rmbg(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
