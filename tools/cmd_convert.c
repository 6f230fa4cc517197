/* cmd_convert.c - `deeplab convert`: PyTorch checkpoint -> safetensors, without PyTorch. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "weights.h"

static const char *const convert_help =
    "usage: deeplab convert SRC.pth DST.safetensors [--dtype f32|f16]\n"
    "\n"
    "Converts a PyTorch checkpoint (torch.save: zip or legacy format) to safetensors, without\n"
    "PyTorch. Keeps torchvision's tensor names; drops aux_classifier.* and num_batches_tracked;\n"
    "strips DataParallel's 'module.' prefix; unwraps {'model': ...} / {'state_dict': ...}.\n"
    "The pickle is read by an allow-list interpreter: nothing in the file is executed, and a\n"
    "file naming anything but tensors and dicts is refused.\n"
    "\n"
    "  --dtype f32|f16       element type of the output (default f32)\n" CLI_LIMITS_HELP;

int cmd_convert(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(convert_help, stdout), 0;
    const char *src = NULL, *dst = NULL;
    dl_dtype dtype = DL_F32;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int missing = 0, rc;
        if (cli_take_common_option(argc, argv, &i, "convert", &rc)) {
            if (rc) return rc;
        } else if (cli_take_value(argc, argv, &i, "--dtype", &v, &missing)) {
            if (!missing && !strcmp(v, "f32")) dtype = DL_F32;
            else if (!missing && !strcmp(v, "f16")) dtype = DL_F16;
            else return cli_usage("convert", "--dtype takes f32 or f16");
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("convert", "unknown option '%s'", argv[i]);
        } else if (!src) {
            src = argv[i];
        } else if (!dst) {
            dst = argv[i];
        } else {
            return cli_usage("convert", "too many arguments: '%s'", argv[i]);
        }
    }
    if (!src || !dst) return cli_usage("convert", "expected SRC.pth DST.safetensors");
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return cli_usage("convert", "the output '%s' is the input; choose another file", dst);
    dl_status s = dl_convert_checkpoint(src, dst, dtype, stdout);
    return s == DL_OK ? 0 : cli_fail(s);
}

