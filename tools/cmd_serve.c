/*
 * cmd_serve.c - `deeplab serve`: the command line, start-up and the end (serve.h has the parts).
 *
 * Start-up: the options, the API keys, the listening socket (bound before anything else, so a
 * port in use fails at once), the HTTP server, then the model loads on its own thread while
 * /healthz already answers and /readyz says "loading". The main thread then only waits for a
 * signal: SIGTERM, SIGINT or SIGHUP stop accepting connections, let what is in flight finish
 * (at most --drain-timeout seconds) and exit 0; a second signal exits at once (128 + N).
 */
#include "cli.h"

#ifndef DL_HAVE_SERVE
int cmd_serve(int argc, char **argv)
{
    (void)argc, (void)argv;
    return cli_error(DL_EUNAVAILABLE, "serve: this deeplab was built without libmicrohttpd and libcurl: install them "
                                      "(tools/install-deps.sh) and run make again");
}
#else
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "file.h"
#include "serve.h"

static const char *const serve_help =
    "usage: deeplab serve [options]\n"
    "\n"
    "An HTTP server with the model loaded once: remove.bg's API (POST /v1.0/removebg), rembg's\n"
    "(POST /api/remove), editing sessions (POST /v1/sessions, .../render) and, at /, an editor to\n"
    "cut out a photo in the browser with keep and erase brushes. The API is described at\n"
    "/openapi.json; /healthz, /readyz and /metrics (Prometheus) are for operators.\n"
    "\n"
    "  --host H              address to listen on (default 127.0.0.1: this machine only; 0.0.0.0\n"
    "                        for every interface, then think of --api-key-file)\n"
    "  --port N              port (default 7000; 0: any free one, printed)\n"
    "  -w, --weights FILE    safetensors weights (default: $DEEPLAB_WEIGHTS, else\n"
    "                        " DEFAULT_WEIGHTS ")\n"
    "  --device D            auto, cpu, cuda, or cuda:N: GPU N alone (one replica per GPU;\n"
    "                        default auto)\n"
    "  --threads N           CPU threads of the network (default 0 = all cores)\n"
    "  --size N              the network's input, shorter side (default 520, as rmbg's --size)\n"
    "  --reference           CPU: the plain-C reference layers (slow; for checking)\n"
    "\n"
    "work:\n"
    "  --max-batch N         photos of one size that wait together run as one batch (default 8)\n"
    "  --batch-wait-ms MS    wait this long for more photos of a batch (default 0: what waits)\n"
    "  --queue N             requests admitted at most; the next get 503 with Retry-After (default 32)\n"
    "  --client-queue N      requests admitted per client address; the next get 429 (default 0: no limit)\n"
    "  --workers N           threads that decode, cut out and encode (default 2)\n"
    "  --max-megapixels MP   size=full/auto scales photos down to this (default 25, as remove.bg)\n"
    "  --session-memory MB   memory for editing sessions, least recently used out first (default 1024)\n"
    "  --session-ttl S       a session unused this long is dropped (default 1800)\n"
    "  --session-prefix HEX  every session id begins with these 1 to 8 hex digits: behind a load\n"
    "                        balancer, one per replica, which routes on it (deploy/nginx/)\n"
    "\n"
    "clients:\n"
    "  --api-key-file FILE   require X-Api-Key: one of the keys in FILE (one a line); else 403\n"
    "  --cors ORIGIN         answer browsers from ORIGIN (or *) with CORS headers (default: none)\n"
    "  --max-body BYTES      largest request body (default 67108864); 413 past it\n"
    "  --max-connections N   connections at once (default 256); --per-ip-connections N (default 64)\n"
    "  --header-timeout S    a request's headers must arrive within S seconds (default 10)\n"
    "  --upload-timeout S    and its body within S (default 60)\n"
    "  --idle-timeout S      an idle keep-alive connection is closed after S (default 30)\n"
    "  --http-threads N      threads for the connections (default 2)\n"
    "  --drain-timeout S     on SIGTERM, wait at most S for requests in flight (default 30)\n"
    "  --access-log FILE     one line per request (default: standard error; none: off)\n"
    "  --allow-url-fetch     let image_url and bg_image_url be fetched (public addresses only)\n"
    "  --fetch-allow CIDRS   ... and these networks too (10.0.0.0/8,127.0.0.1/32)\n"
    "  --fetch-timeout S     each fetch within S seconds (default 15), at most 3 redirects\n"
    "  -v, --verbose         libmicrohttpd's own messages too\n" CLI_LIMITS_HELP;

static int parse_size(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_options(serve_opts *o, int *drain, int argc, char **argv)
{
    int64_t body = 64 << 20, mem = 1024, fetch_bytes = -1;
    *o = (serve_opts){.host = "127.0.0.1", .port = 7000, .device = DL_DEVICE_AUTO, .size = 520, .max_batch = 8,
                      .queue = 32, .workers = 2, .http_threads = 2, .max_connections = 256,
                      .per_ip_connections = 64, .header_timeout = 10, .upload_timeout = 60, .idle_timeout = 30,
                      .fetch_timeout = 15, .fetch_max_redirects = 3, .max_megapixels = 25, .session_ttl = 1800};
    *drain = 30;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        int missing = 0, rc = 0;
#define VALUE(name) (cli_take_value(argc, argv, &i, name, &v, &missing) && (missing ? (v = "", 1) : 1))
#define INT(name, lo, hi, field, what)                                                                          \
    else if (VALUE(name)) {                                                                                     \
        if (cli_parse_int(v, lo, hi, &o->field)) return cli_usage("serve", "%s takes %s, not '%s'", name, what, v); \
    }
        if (cli_take_common_option(argc, argv, &i, "serve", &rc)) {
            if (rc) return rc;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "--reference")) {
            o->reference = 1;
        } else if (!strcmp(a, "--allow-url-fetch")) {
            o->allow_url_fetch = 1;
        } else if (VALUE("--host")) {
            if (!*v) return cli_usage("serve", "--host needs an address");
            o->host = v;
        } else if (VALUE("-w") || VALUE("--weights")) {
            if (!*v) return cli_usage("serve", "%s needs a file", a);
            o->weights = v;
        } else if (VALUE("--device")) {
            if ((rc = cli_parse_device("serve", v, &o->device))) return rc;
        }
        INT("--port", 0, 65535, port, "a port from 0 to 65535")
        INT("--threads", 0, 1024, threads, "a number from 0 (all cores) to 1024")
        INT("--size", 0, 16384, size, "a number of pixels from 0 to 16384")
        INT("--max-batch", 1, 256, max_batch, "a number of photos from 1 to 256")
        INT("--batch-wait-ms", 0, 10000, batch_wait_ms, "milliseconds from 0 to 10000")
        INT("--queue", 1, 100000, queue, "a number of requests from 1 to 100000")
        INT("--client-queue", 0, 100000, client_queue, "a number of requests (0: no limit)")
        INT("--workers", 1, 256, workers, "a number of threads from 1 to 256")
        INT("--http-threads", 1, 256, http_threads, "a number of threads from 1 to 256")
        INT("--max-connections", 1, 100000, max_connections, "a number from 1 to 100000")
        INT("--per-ip-connections", 0, 100000, per_ip_connections, "a number (0: no limit)")
        INT("--header-timeout", 1, 3600, header_timeout, "seconds from 1 to 3600")
        INT("--upload-timeout", 1, 86400, upload_timeout, "seconds from 1 to 86400")
        INT("--idle-timeout", 1, 86400, idle_timeout, "seconds from 1 to 86400")
        INT("--session-ttl", 1, 30 * 86400, session_ttl, "seconds from 1 to 2592000")
        INT("--fetch-timeout", 1, 600, fetch_timeout, "seconds from 1 to 600")
        else if (VALUE("--drain-timeout")) {
            if (cli_parse_int(v, 0, 3600, drain)) return cli_usage("serve", "--drain-timeout takes seconds from 0 to 3600, not '%s'", v);
        } else if (VALUE("--max-body")) {
            if (parse_size(v, 1024, (int64_t)1 << 40, &body))
                return cli_usage("serve", "--max-body takes a number of bytes from 1024, not '%s'", v);
        } else if (VALUE("--session-memory")) {
            if (parse_size(v, 1, (int64_t)1 << 24, &mem))
                return cli_usage("serve", "--session-memory takes megabytes from 1, not '%s'", v);
        } else if (VALUE("--max-megapixels")) {
            char *end;
            o->max_megapixels = strtod(v, &end);
            if (end == v || *end || !(o->max_megapixels >= 0.01 && o->max_megapixels <= 1000))
                return cli_usage("serve", "--max-megapixels takes a number from 0.01 to 1000, not '%s'", v);
        } else if (VALUE("--session-prefix")) {
            if (!*v || strlen(v) > 8 || strspn(v, "0123456789abcdef") != strlen(v))
                return cli_usage("serve", "--session-prefix takes 1 to 8 lowercase hex digits, not '%s'", v);
            o->session_prefix = v;
        } else if (VALUE("--api-key-file")) {
            if (!*v) return cli_usage("serve", "--api-key-file needs a file");
            o->api_key_file = v;
        } else if (VALUE("--cors")) {
            if (!*v) return cli_usage("serve", "--cors needs an origin (https://example.com) or *");
            o->cors = v;
        } else if (VALUE("--access-log")) {
            if (!*v) return cli_usage("serve", "--access-log needs a file, - or none");
            o->access_log = v;
        } else if (VALUE("--fetch-allow")) {
            o->fetch_allow = v;
        } else if (VALUE("--fetch-max-bytes")) {
            if (parse_size(v, 1, (int64_t)1 << 40, &fetch_bytes))
                return cli_usage("serve", "--fetch-max-bytes takes a number of bytes, not '%s'", v);
        } else {
            return cli_usage("serve", "unknown option '%s'", a);
        }
#undef INT
#undef VALUE
    }
    if (!o->weights) o->weights = getenv("DEEPLAB_WEIGHTS");
    if (!o->weights || !*o->weights) o->weights = DEFAULT_WEIGHTS;
    o->max_body = body;
    o->session_memory = mem << 20;
    o->fetch_max_bytes = fetch_bytes > 0 ? fetch_bytes : body;
    return 0;
}

/* The keys of --api-key-file: its non-empty lines, surrounding blanks removed. */
static int read_keys(const char *path, char **text, const char ***keys, int *nkeys)
{
    uint8_t *data;
    size_t size;
    dl_status s = dl_read_file(path, 1 << 20, &data, &size);
    if (s != DL_OK) return cli_fail(s);
    *text = (char *)data;
    *keys = calloc(size / 2 + 2, sizeof **keys);
    if (!*keys) return cli_error(DL_ENOMEM, "out of memory");
    *nkeys = 0;
    char *save = NULL;
    for (char *line = strtok_r(*text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t') line++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
        if (n) (*keys)[(*nkeys)++] = line;
    }
    if (!*nkeys) return cli_error(DL_EDATA, "%s: no key in it (one a line)", path);
    return 0;
}

/* A listening TCP socket on host:port. */
static int listen_on(const char *host, int port, int *bound_port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    const int g = getaddrinfo(host, service, &hints, &res);
    if (g) return cli_error(DL_EUSAGE, "serve: --host %s: %s", host, gai_strerror(g)), -1;
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 256)) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return cli_error(DL_EUNAVAILABLE, "serve: cannot listen on %s port %d: %s", host, port, strerror(err)), -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    char name[NI_MAXHOST], serv[NI_MAXSERV];
    getnameinfo((struct sockaddr *)&ss, len, name, sizeof name, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    *bound_port = atoi(serv);
    return fd;
}

int cmd_serve(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) return fputs(serve_help, stdout), 0;
    serve_opts o;
    int drain_timeout;
    int rc = parse_options(&o, &drain_timeout, argc, argv);
    if (rc) return rc;
    char *key_text = NULL;
    const char **keys = NULL;
    int nkeys = 0;
    if (o.api_key_file && (rc = read_keys(o.api_key_file, &key_text, &keys, &nkeys))) {
        free(key_text), free(keys);
        return rc;
    }
    /* Signals go to sigwait below, not to handlers on any thread; a closed socket is an error
     * return, not SIGPIPE. Before any thread starts, so that they all inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    int port;
    const int fd = listen_on(o.host, o.port, &port);
    if (fd < 0) {
        free(key_text), free(keys);
        return DL_EUNAVAILABLE;
    }
    /* the socket listens already (connections wait in its backlog until the server runs) */
    const int local = !strcmp(o.host, "127.0.0.1") || !strcmp(o.host, "localhost") || !strcmp(o.host, "::1");
    cli_say("serve: listening on http://%s%s%s:%d/ (the editor; the API is described at /openapi.json)%s",
            strchr(o.host, ':') ? "[" : "", o.host, strchr(o.host, ':') ? "]" : "", port,
            local ? "" : nkeys ? "; reachable from other machines" : "; reachable from other machines, without "
                                                                      "an API key (--api-key-file)");
#ifdef M_MMAP_THRESHOLD
    /* Every request allocates and frees buffers of megabytes (a 12-megapixel cut-out: 48 MB of
     * alpha, as much of picture). glibc would mmap and munmap each, and every request would fault
     * its pages in again (a tenth of a second per 100 MB); kept in the heap they are reused, as
     * pipeline.c does for folders. The memory stays with the process (resident memory levels off
     * at what the largest requests needed). */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
    curl_global_init(CURL_GLOBAL_DEFAULT);
    (void)dl_voc_palette(); /* built on first use: before the threads that read it */
    session_store *st = sessions_create(o.session_memory, o.session_ttl, o.session_prefix);
    serve_work *w = st ? work_start(&o, st) : NULL;
    serve_http *h = w ? http_start(&o, fd, w, st, keys, nkeys) : NULL;
    if (!h) {
        work_stop(w);
        sessions_free(st);
        close(fd);
        free(key_text), free(keys);
        return st && w ? DL_EINTERNAL : cli_error(DL_ENOMEM, "out of memory starting the server");
    }
    /* wait for a signal, or for the model to fail to load */
    int sig = 0, status = 0;
    const struct timespec tick = {0, 200 * 1000 * 1000};
    while (sig <= 0) {
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig <= 0 && work_ready(w, &status) < 0) break;
    }
    int exit_status = 0;
    if (sig > 0) {
        cli_say("serve: %s: draining (%d requests in flight), then exiting", strsignal(sig), work_depth(w));
        http_drain(h);
        const double t0 = dl_now();
        while ((work_depth(w) > 0 || http_busy(h) > 0) && dl_now() - t0 < drain_timeout) {
            const int again = sigtimedwait(&stop, NULL, &(struct timespec){0, 50 * 1000 * 1000});
            if (again > 0) { /* a second signal: now */
                cli_say("serve: %s again: exiting now", strsignal(again));
                _exit(128 + again);
            }
        }
        if (work_depth(w) > 0 || http_busy(h) > 0)
            cli_say("serve: %d requests still in flight after --drain-timeout %d s: exiting anyway", http_busy(h),
                    drain_timeout);
        if (work_depth(w) > 0) _exit(0); /* workers still hold connections: do not tear down under them */
    } else {
        exit_status = status ? status : DL_EINTERNAL; /* the model did not load: the loader said why */
        cli_say("serve: stopping: no model to serve");
        http_drain(h);
    }
    http_stop(h);
    work_stop(w);
    sessions_free(st);
    curl_global_cleanup();
    free(key_text), free(keys);
    if (!exit_status) cli_say("serve: stopped");
    return exit_status;
}
#endif
