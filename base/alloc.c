/* alloc.c - allocation with a message on failure. See alloc.h. */
#include "alloc.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "status.h"

void *dl_alloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p) dl_fail(DL_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *dl_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) dl_fail(DL_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

/* Buffers from 4 MB up (packed weights, the activation arena, Winograd's scratch) start on a 2 MB
 * boundary and are marked for transparent huge pages: on a VM a page fault costs microseconds, and
 * ResNet-101's packed weights alone are 150,000 4 KB pages, most of a model's load time. */
enum { HUGE_FROM = 4 << 20, HUGE_PAGE = 2 << 20 };

void *dl_alloc_aligned(size_t n, const char *what)
{
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    const size_t align = rounded >= HUGE_FROM ? HUGE_PAGE : 64;
    if (rounded < n || posix_memalign(&p, align, rounded ? rounded : 64) != 0) {
        dl_fail(DL_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE) madvise(p, rounded & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE); /* a hint: failure is fine */
#endif
    return p;
}
