/* deeplab - command-line front end (work in progress: convert only). */
#include <stdio.h>
#include <string.h>

#include "deeplab.h"
#include "weights.h"

static int usage_error(const char *msg)
{
    fprintf(stderr, "deeplab: %s (see deeplab --help)\n", msg);
    return DL_EUSAGE;
}

static int cmd_convert(int argc, char **argv)
{
    const char *src = NULL, *dst = NULL;
    dl_dtype dtype = DL_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            if (!strcmp(d, "f32")) dtype = DL_F32;
            else if (!strcmp(d, "f16")) dtype = DL_F16;
            else return usage_error("convert: --dtype takes f32 or f16");
        } else if (!src) src = argv[i];
        else if (!dst) dst = argv[i];
        else return usage_error("convert: too many arguments");
    }
    if (!src || !dst) return usage_error("convert: expected SRC.pth DST.safetensors");
    dl_status s = dl_convert_checkpoint(src, dst, dtype, stdout);
    if (s != DL_OK) fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return s;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "convert")) return cmd_convert(argc - 1, argv + 1);
    return usage_error("expected a command: convert");
}
