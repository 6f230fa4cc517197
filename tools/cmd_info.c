/* cmd_info.c - `deeplab info`: what a weights file holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const info_help =
    "usage: deeplab info [WEIGHTS]\n"
    "\n"
    "Prints what a weights file holds: architecture, class count, parameters, dtype.\n"
    "WEIGHTS defaults to $DEEPLAB_WEIGHTS, else " DEFAULT_WEIGHTS ".\n" CLI_LIMITS_HELP;

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(info_help, stdout), 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (cli_take_common_option(argc, argv, &i, "info", &rc)) {
            if (rc) return rc;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("info", "unknown option '%s'", argv[i]);
        } else if (path) {
            return cli_usage("info", "one weights file expected, got '%s' too", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) path = getenv("DEEPLAB_WEIGHTS");
    if (!path || !*path) path = DEFAULT_WEIGHTS;
    dl_model *m;
    dl_options opt = {.device = DL_DEVICE_CPU, .threads = 1, .reference = 1}; /* no packing needed */
    int rc = cli_load_model(path, &opt, &m);
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

