/* json.h - a small strict JSON parser (RFC 8259) for safetensors headers (internal to weights/). */
#ifndef DL_JSON_H
#define DL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef enum dl_json_type {
    DL_JSON_NULL, DL_JSON_FALSE, DL_JSON_TRUE, DL_JSON_NUMBER, DL_JSON_STRING, DL_JSON_ARRAY, DL_JSON_OBJECT
} dl_json_type;

typedef struct dl_json {
    dl_json_type type;
    int is_int;            /* NUMBER written without fraction or exponent that fits int64 */
    int64_t i;             /* its value (other numbers are validated, not kept) */
    const char *s;         /* STRING: decoded UTF-8, NUL-terminated, may itself contain \u0000;
                              NUMBER: the number as written, NUL-terminated */
    size_t len;            /* STRING, NUMBER: bytes in s; ARRAY, OBJECT: number of items */
    struct dl_json *items; /* ARRAY: the items; OBJECT: the values, in file order */
    const char **keys;     /* OBJECT: the decoded keys (duplicates are kept) */
    size_t *key_lens;
} dl_json;

/* A parsed document; every node lives in an arena freed by dl_json_free. */
typedef struct dl_json_doc {
    dl_json root;
    void *arena;
} dl_json_doc;

/* Parses exactly one JSON value, optionally surrounded by whitespace. On failure the message
 * says what was expected and at which byte ("invalid JSON at byte 17: expected ':'"). */
dl_status dl_json_parse(const char *text, size_t len, dl_json_doc *doc);
void dl_json_free(dl_json_doc *doc);

/* 1 if s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF). */
int dl_utf8_valid(const char *s, size_t len);

#endif
