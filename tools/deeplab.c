/*
 * deeplab - the command-line program.
 *
 *   deeplab convert SRC.pth DST.safetensors [--dtype f32|f16]
 *   deeplab info [WEIGHTS]
 *   deeplab segment [options] -o OUT.png IN.png
 *   deeplab rmbg [options] -o OUT.png IN.png
 *   deeplab serve [options]
 *
 * Every error is one line on stderr, "deeplab: <what>", and the exit status says what kind
 * (see README.md: 64 usage, 65 bad data, 66 missing input, 69 no such device, 70 internal,
 * 71 out of memory, 73 cannot create output, 74 I/O error). Outputs are written to a temporary
 * file and renamed, so a failed run leaves nothing behind.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cuda_device.h"
#include "outfile.h"

/* SIGINT, SIGTERM, SIGHUP: remove the temporary files of outputs being written (an existing
 * output is untouched until its rename), then die of the signal as if unhandled, so that the
 * caller sees it (exit status 128 + signal in a shell: 130 for ^C, 143 for kill). Only
 * async-signal-safe calls: unlink (in dl_outfile_remove_all) and raise; SA_RESETHAND has
 * already restored the default action. */
static void on_signal(int sig)
{
    dl_outfile_remove_all();
    raise(sig);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigfillset(&sa.sa_mask); /* no second signal inside the handler */
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        /* A signal ignored by the caller (nohup, a background job's SIGINT) stays ignored. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

static const char *const main_help =
    "usage: deeplab COMMAND [options]\n"
    "\n"
    "DeepLabV3 (torchvision's ResNet-101/50 models) in plain C and CUDA: semantic segmentation\n"
    "and background removal.\n"
    "\n"
    "commands:\n"
    "  rmbg      remove the background of a photo (RGBA PNG cut-out)\n"
    "  segment   class map of a photo (palette PNG), optionally the raw logits\n"
    "  info      describe a weights file\n"
    "  convert   PyTorch checkpoint (.pth) -> safetensors, without PyTorch\n"
    "  bench     time the network end to end and layer by layer\n"
    "  serve     an HTTP API (remove.bg's and rembg's) and a web editor, on 127.0.0.1:7000\n"
    "\n"
    "`deeplab COMMAND --help` describes each. Exit status: 0 success, 64 usage, 65 bad data,\n"
    "66 missing input, 69 device unavailable, 70 internal error, 71 out of memory,\n"
    "73 cannot create output, 74 I/O error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        return cli_error(DL_EUSAGE, "expected a command: rmbg, segment, info, convert, bench or serve (see deeplab --help)");
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return fputs(main_help, stdout), 0;
    if (!strcmp(argv[1], "--version"))
        return printf("deeplab %s (commit %s)%s\n", DEEPLAB_VERSION, cli_commit(),
                      dl_cuda_emulated() ? "; CUDA: the emulated GPU (--device cuda runs the CUDA code on the CPU)" : ""),
               0;
    catch_signals();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "segment")) return cmd_segment(argc - 1, argv + 1);
    if (!strcmp(cmd, "rmbg")) return cmd_rmbg(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    return cli_error(DL_EUSAGE, "unknown command '%s' (see deeplab --help)", cmd);
}
