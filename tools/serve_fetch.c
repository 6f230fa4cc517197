/*
 * serve_fetch.c - image_url and bg_image_url (only with --allow-url-fetch): a GET with libcurl,
 * made safe to run on behalf of strangers. A server that fetches any URL it is given can be made
 * to read its own network (the cloud's metadata service at 169.254.169.254, an admin page on
 * localhost): so every address curl is about to connect to, after name resolution and on every
 * redirect, is checked in the open-socket callback, and loopback, private, link-local, multicast
 * and reserved ones are refused (a name that resolves to 127.0.0.1 too; checking the name before
 * curl resolves it again would not do). Only http and https, no proxy from the environment, at
 * most max_redirects redirects, max_bytes of body and timeout_ms in all.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "serve.h"

/* 1 if the IPv4 address (host order) is in a network no public fetch should reach. */
static int private_v4(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } nets[] = {
        {0x00000000, 8},  {0x0a000000, 8},  {0x64400000, 10}, {0x7f000000, 8},  {0xa9fe0000, 16},
        {0xac100000, 12}, {0xc0000000, 24}, {0xc0000200, 24}, {0xc0a80000, 16}, {0xc6120000, 15},
        {0xc6336400, 24}, {0xcb007100, 24}, {0xe0000000, 4},  {0xf0000000, 4},
    };
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++)
        if ((a >> (32 - nets[k].bits)) == (nets[k].net >> (32 - nets[k].bits))) return 1;
    return 0;
}

/* 1 if the 16-byte IPv6 address is not a public unicast one (its IPv4 forms checked as IPv4). */
static int private_v6(const uint8_t *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(a, mapped, 12)) return private_v4((uint32_t)a[12] << 24 | a[13] << 16 | a[14] << 8 | a[15]);
    static const uint8_t zero[16];
    if (!memcmp(a, zero, 15) && a[15] <= 1) return 1;                           /* ::, ::1 */
    if (!memcmp(a, zero, 12)) return 1;                                         /* IPv4-compatible */
    if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)) return 1; /* fc00::/7, fe80::/10 */
    if (a[0] == 0xff) return 1;                                                 /* multicast */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return 1;  /* documentation */
    if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b) return 1;  /* NAT64 */
    if (a[0] == 0x01 && a[1] == 0x00 && !memcmp(a + 2, zero, 6)) return 1;      /* discard */
    return 0;
}

/* 1 if addr (family, 4 or 16 bytes) lies in one of the comma-separated CIDRs of allow. */
static int in_allow(int family, const uint8_t *addr, const char *allow)
{
    if (!allow) return 0;
    char *copy = strdup(allow), *save = NULL;
    int found = 0;
    for (char *c = copy ? strtok_r(copy, ",", &save) : NULL; c && !found; c = strtok_r(NULL, ",", &save)) {
        char *slash = strchr(c, '/');
        int bits = family == AF_INET ? 32 : 128;
        if (slash) *slash = 0, bits = atoi(slash + 1);
        uint8_t net[16];
        const int n = family == AF_INET ? 4 : 16;
        if (inet_pton(family, c, net) != 1 || bits < 0 || bits > 8 * n) continue;
        int ok = 1;
        for (int b = 0; b < bits && ok; b++) ok = ((addr[b / 8] ^ net[b / 8]) & (0x80 >> (b % 8))) == 0;
        found = ok;
    }
    free(copy);
    return found;
}

static int allowed(int family, const void *addr, const char *allow)
{
    if (family == AF_INET) {
        const uint8_t *b = addr;
        return in_allow(AF_INET, b, allow) || !private_v4((uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
    }
    if (family == AF_INET6) return in_allow(AF_INET6, addr, allow) || !private_v6(addr);
    return 0;
}

int fetch_address_allowed(const char *addr, const char *allow)
{
    uint8_t a[16];
    if (inet_pton(AF_INET, addr, a) == 1) return allowed(AF_INET, a, allow);
    if (inet_pton(AF_INET6, addr, a) == 1) return allowed(AF_INET6, a, allow);
    return 0;
}

typedef struct fetch {
    const fetch_limits *lim;
    uint8_t *data;
    size_t size, cap;
    int too_big;
    char refused[96]; /* the address refused, if one was */
} fetch;

static curl_socket_t open_socket(void *p, curlsocktype purpose, struct curl_sockaddr *a)
{
    fetch *f = p;
    (void)purpose;
    const void *addr = NULL;
    if (a->family == AF_INET) addr = &((const struct sockaddr_in *)&a->addr)->sin_addr;
    if (a->family == AF_INET6) addr = &((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
    if (!addr || !allowed(a->family, addr, f->lim->allow)) {
        if (addr) inet_ntop(a->family, addr, f->refused, sizeof f->refused);
        else snprintf(f->refused, sizeof f->refused, "family %d", a->family);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    fetch *f = userdata;
    const size_t k = size * n;
    if ((int64_t)(f->size + k) > f->lim->max_bytes) {
        f->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (f->size + k > f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 65536;
        while (cap < f->size + k) cap *= 2;
        uint8_t *grown = realloc(f->data, cap);
        if (!grown) return 0;
        f->data = grown, f->cap = cap;
    }
    memcpy(f->data + f->size, p, k);
    f->size += k;
    return k;
}

int fetch_url(const char *url, const fetch_limits *lim, uint8_t **data, size_t *size, char *err, size_t errlen)
{
    *data = NULL;
    *size = 0;
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
        snprintf(err, errlen, "%.200s: only http and https URLs are fetched", url);
        return -1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot start libcurl");
        return -1;
    }
    fetch f = {.lim = lim};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)lim->max_redirects);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)lim->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)lim->timeout_ms);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)lim->max_bytes);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "deeplab-serve");
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &f);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK) {
        *data = f.data ? f.data : malloc(1);
        *size = f.size;
        return 0;
    }
    free(f.data);
    if (f.refused[0])
        snprintf(err, errlen, "%.200s: refused to connect to %s (a private, loopback or reserved address)", url,
                 f.refused);
    else if (f.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        snprintf(err, errlen, "%.200s: more than %lld bytes", url, (long long)lim->max_bytes);
    else
        snprintf(err, errlen, "%.200s: %s", url, curl_err[0] ? curl_err : curl_easy_strerror(rc));
    return -1;
}
