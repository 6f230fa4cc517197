/* convert.c - placeholder until the converter lands. */
#include <stdio.h>
#include "util.h"
#include "weights.h"

dl_status dl_convert_checkpoint(const char *src, const char *dst, dl_dtype dtype, void *log)
{
    (void)dst; (void)dtype; (void)log;
    return dl_fail(DL_EINTERNAL, "%s: convert is not implemented yet", src);
}
