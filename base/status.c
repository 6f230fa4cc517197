/* status.c - the per-thread last error. See status.h. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *dl_last_error(void) { return last_error; }

dl_status dl_fail(dl_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

void dl_error_prefix(const char *prefix)
{
    size_t plen = strlen(prefix) + 2, len = strlen(last_error);
    if (plen >= sizeof last_error) return;
    if (len > sizeof last_error - 1 - plen) len = sizeof last_error - 1 - plen; /* truncate */
    memmove(last_error + plen, last_error, len);
    last_error[plen + len] = 0;
    memcpy(last_error, prefix, plen - 2);
    memcpy(last_error + plen - 2, ": ", 2);
}
