/*
 * fuzz.h - what the libFuzzer targets share: the input as a file, and the checks every target
 * makes on the library's answer (see tests/fuzz/README.md).
 *
 * The library reads files by path, so each input is written to an in-memory file (memfd) and
 * named by /proc/self/fd/N: the real code path (open, fstat, mmap or stdio) runs, without
 * touching the disk.
 */
#ifndef DL_FUZZ_H
#define DL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "deeplab.h"

/* The input as a file; the same path every time. */
__attribute__((unused)) static const char *fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) abort();
        done += (size_t)n;
    }
    return path;
}

/* The contract of every failing call: a documented status and one non-empty line that starts
 * with the file's name. A breach is a finding: abort() so that libFuzzer keeps the input. */
__attribute__((unused)) static void fuzz_check_error(dl_status s, const char *path)
{
    const char *msg = dl_last_error();
    int known = s == DL_EUSAGE || s == DL_EDATA || s == DL_ENOINPUT || s == DL_ENOMEM || s == DL_EIO;
    if (!known || !msg[0] || strchr(msg, '\n') || (path && strncmp(msg, path, strlen(path)) != 0)) {
        fprintf(stderr, "fuzz: contract broken: status %d, message \"%s\"\n", (int)s, msg);
        abort();
    }
}

/* Reads every byte of a result, so that the sanitizers see a bad pointer or length. */
static volatile uint8_t fuzz_sink;
static void fuzz_touch(const void *p, size_t n)
{
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= ((const uint8_t *)p)[i];
    fuzz_sink = x;
}

#endif
