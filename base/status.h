/*
 * status.h - how every part of deeplab reports failure: a status code returned, and one line
 * naming the place and what was expected, kept per thread.
 *
 *     if (n < 1) return dl_fail(DL_EDATA, "%s: not a PNG file", path);
 *     ...
 *     if (s != DL_OK) fprintf(stderr, "deeplab: %s\n", dl_last_error());
 *
 * The codes are also the command's exit statuses (sysexits.h), documented in README.md.
 * This is the bottom of the dependency picture: base <- layers, weights <- engine <- tools.
 */
#ifndef DL_STATUS_H
#define DL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dl_status {
    DL_OK = 0,
    DL_EUSAGE = 64,       /* bad argument or option */
    DL_EDATA = 65,        /* malformed input: image, checkpoint or weights file */
    DL_ENOINPUT = 66,     /* input file missing or unreadable */
    DL_EUNAVAILABLE = 69, /* the requested device is not available */
    DL_EINTERNAL = 70,    /* internal error (a bug) */
    DL_ENOMEM = 71,       /* out of memory */
    DL_ECANTCREATE = 73,  /* cannot create the output file */
    DL_EIO = 74           /* read or write error */
} dl_status;

#if defined(__GNUC__)
#define DL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DL_PRINTF(f, a)
#endif

/* The calling thread's last error message ("" if none): one line, no trailing newline. */
const char *dl_last_error(void);

/* Sets the calling thread's last error to the formatted message and returns code. */
dl_status dl_fail(dl_status code, const char *fmt, ...) DL_PRINTF(2, 3);

/* Prefixes the current last error with "prefix: " (adds context on the way up). */
void dl_error_prefix(const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
