/* outfile.c - output files that appear only when complete. See outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "status.h"

/* Registry of temporary files being written, for removal from a signal handler. Paths are copied
 * into fixed arrays so the handler touches no heap memory; slots are claimed atomically. */
#define OUT_SLOTS 64
#define OUT_PATH 4096
static char out_tmp[OUT_SLOTS][OUT_PATH];
static atomic_int out_used[OUT_SLOTS];

static int slot_claim(const char *tmp)
{
    if (strlen(tmp) >= OUT_PATH) return -1;
    for (int i = 0; i < OUT_SLOTS; i++) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&out_used[i], &expected, 2)) {
            strcpy(out_tmp[i], tmp);
            atomic_store(&out_used[i], 1);
            return i;
        }
    }
    return -1; /* still written atomically, only not removed on a signal */
}

static void slot_release(int i)
{
    if (i >= 0) atomic_store(&out_used[i], 0);
}

void dl_outfile_remove_all(void)
{
    for (int i = 0; i < OUT_SLOTS; i++)
        if (atomic_load(&out_used[i]) == 1) unlink(out_tmp[i]);
}

static dl_status outfile_open(dl_outfile *o, const char *path);

/* 10 characters [0-9A-Za-z] for a temporary name, different in every call and process. */
static void temp_suffix(char out[11])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 40 ^
                 atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 10; i++) {
        x ^= x >> 31, x *= 0xbf58476d1ce4e5b9u, x ^= x >> 29; /* splitmix64-style mixing */
        out[i] = digits[x % 62];
    }
    out[10] = 0;
}

dl_status dl_outfile_open(dl_outfile *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    if (!strcmp(path, "-")) { /* standard output, through a copy of the descriptor: closing it keeps stdout open */
        int fd = dup(STDOUT_FILENO);
        o->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        o->path = strdup("stdout");
        if (!o->f || !o->path) {
            int e = errno;
            if (o->f) fclose(o->f);
            else if (fd >= 0) close(fd);
            free(o->path);
            memset(o, 0, sizeof *o);
            o->slot = -1;
            return dl_fail(DL_ECANTCREATE, "stdout: cannot write: %s", strerror(e));
        }
        return DL_OK;
    }
    /* Through a symbolic link, the file to replace is the link's target: write beside it. */
    struct stat st;
    char *resolved = NULL;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && (resolved = realpath(path, NULL))) path = resolved;
    dl_status s = outfile_open(o, path);
    free(resolved);
    return s;
}

dl_status dl_outfile_open_memory(dl_outfile *o, const char *name, char **data, size_t *size)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    *data = NULL;
    *size = 0;
    o->path = strdup(name);
    o->f = o->path ? open_memstream(data, size) : NULL;
    if (!o->f) {
        free(o->path);
        memset(o, 0, sizeof *o);
        o->slot = -1;
        return dl_fail(DL_ENOMEM, "%s: out of memory", name);
    }
    o->mem = data;
    o->mem_size = size;
    return DL_OK;
}

static dl_status outfile_open(dl_outfile *o, const char *path)
{
    struct stat st;
    const int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode))
        return dl_fail(DL_ECANTCREATE, "%s: is a directory, expected a file name", path);
    if (exists && !S_ISREG(st.st_mode)) {
        /* A device or a pipe (/dev/null, /dev/stdout, a FIFO): write to it directly. Renaming a
         * temporary file over it would replace the device node itself. */
        o->f = fopen(path, "wb");
        if (!o->f) return dl_fail(DL_ECANTCREATE, "%s: cannot open for writing: %s", path, strerror(errno));
        o->path = strdup(path);
        return DL_OK;
    }
    /* Temporary name: same folder, hidden, unique: "dir/.name.tmp-XXXXXXXXXX". Not mkostemp:
     * the name is entered in the registry before the file exists, so that a signal at any moment
     * finds it (removing a name not yet created is harmless), and open's mode 0666 gets the umask
     * applied by the kernel (reading the umask means setting it, which races between threads). */
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    size_t len = dirlen + strlen(base) + 20;
    o->tmp = malloc(len);
    o->path = strdup(path);
    if (!o->tmp || !o->path) {
        free(o->tmp);
        free(o->path);
        return dl_fail(DL_ENOMEM, "%s: out of memory", path);
    }
    int fd = -1, e = EEXIST;
    for (int attempt = 0; fd < 0 && e == EEXIST && attempt < 100; attempt++) {
        char suffix[11];
        temp_suffix(suffix);
        snprintf(o->tmp, len, "%.*s.%s.tmp-%s", (int)dirlen, path, base, suffix);
        o->slot = slot_claim(o->tmp);
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (fd < 0) {
            slot_release(o->slot);
            o->slot = -1;
        }
    }
    if (fd < 0) {
        free(o->tmp);
        free(o->path);
        o->tmp = o->path = NULL;
        return dl_fail(DL_ECANTCREATE, "%s: cannot create: %s", path, strerror(e));
    }
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        close(fd);
        dl_outfile_abort(o);
        return dl_fail(DL_ENOMEM, "%s: out of memory", path);
    }
    return DL_OK;
}

void dl_outfile_write(dl_outfile *o, const void *data, size_t n)
{
    if (!o->failed && n && fwrite(data, 1, n, o->f) != n) o->failed = errno ? errno : EIO;
}

dl_status dl_outfile_commit(dl_outfile *o)
{
    int err = o->failed;
    if (fflush(o->f) != 0 && !err) err = errno;
    if (!err && o->tmp && fsync(fileno(o->f)) != 0 && errno != EINVAL && errno != EROFS) err = errno;
    if (fclose(o->f) != 0 && !err) err = errno;
    o->f = NULL;
    if (err) {
        char *path = o->path;
        o->path = NULL;
        dl_outfile_abort(o); /* a memory output's bytes are freed too */
        dl_status s = dl_fail(DL_EIO, "%s: write error: %s", path, strerror(err));
        free(path);
        return s;
    }
    if (!o->tmp) { /* written in place (a device, a pipe, memory) */
        free(o->path);
        memset(o, 0, sizeof *o);
        o->slot = -1;
        return DL_OK;
    }
    if (rename(o->tmp, o->path) != 0) {
        int e = errno;
        char *path = o->path;
        o->path = NULL;
        dl_outfile_abort(o);
        dl_status s = dl_fail(DL_ECANTCREATE, "%s: cannot rename into place: %s", path, strerror(e));
        free(path);
        return s;
    }
    slot_release(o->slot);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->slot = -1;
    return DL_OK;
}

void dl_outfile_abort(dl_outfile *o)
{
    if (o->f) fclose(o->f);
    if (o->mem) free(*o->mem), *o->mem = NULL, *o->mem_size = 0;
    if (o->tmp) unlink(o->tmp);
    slot_release(o->slot);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->slot = -1;
}
