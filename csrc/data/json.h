/* json.h: a small strict JSON reader (RFC 8259) and the text buffer the writers use.
 *
 * The reader builds a tree of tg_json_value; every value keeps the line and column
 * where it starts, so code that checks a document (the manifest, a COCO file) can
 * name the place of a wrong value. It accepts exactly RFC 8259: no comments, no
 * trailing commas, no NaN, no leading zeros, no control characters or invalid
 * UTF-8 in strings, no duplicate keys in an object; nesting is limited to
 * TG_JSON_MAX_DEPTH. Errors are TG_STATUS_DATASET (JSON in trugrade is data: the
 * manifest, COCO annotations) with "NAME:LINE:COLUMN: what is wrong".
 * It is not a streaming parser: the whole text is in memory. */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define TG_JSON_MAX_DEPTH 256

typedef enum tg_json_kind {
    TG_JSON_KIND_NULL = 0,
    TG_JSON_KIND_BOOL,
    TG_JSON_KIND_NUMBER,
    TG_JSON_KIND_STRING,
    TG_JSON_KIND_ARRAY,
    TG_JSON_KIND_OBJECT,
} tg_json_kind;

struct tg_json_member;

typedef struct tg_json_value {
    tg_json_kind kind;
    int line, column;                 /* 1-based, where the value starts */
    int boolean;                      /* TG_JSON_KIND_BOOL */
    double number;                    /* TG_JSON_KIND_NUMBER */
    int is_integer;                   /* number written without fraction/exponent and fits int64 */
    int64_t integer;                  /* its value when is_integer */
    char *string;                     /* TG_JSON_KIND_STRING: UTF-8, NUL-terminated */
    size_t string_length;             /* bytes, without the NUL (strings may hold \u0000) */
    struct tg_json_value *items;      /* TG_JSON_KIND_ARRAY: [count] */
    struct tg_json_member *members;   /* TG_JSON_KIND_OBJECT: [count], in document order */
    int64_t count;
} tg_json_value;

typedef struct tg_json_member {
    char *key;                        /* UTF-8, NUL-terminated */
    tg_json_value value;
} tg_json_member;

/* Parses `text` ([length] bytes) into `out`. `name` (a file name) starts error messages. */
tg_status tg_json_parse(const char *text, size_t length, const char *name, tg_json_value *out);

/* Reads and parses a file (TG_STATUS_IO when it cannot be read). */
tg_status tg_json_parse_file(const char *path, tg_json_value *out);

/* Frees what a parse allocated (safe on a zeroed value). */
void tg_json_free(tg_json_value *value);

/* The member `key` of an object, or NULL (also when `object` is not an object). */
const tg_json_value *tg_json_get(const tg_json_value *object, const char *key);

/* A kind's name for messages ("string", "object", ...). */
const char *tg_json_kind_name(tg_json_kind kind);

/* ---- writing ---- */

/* A growable NUL-terminated text buffer. After an allocation failure it stays
 * failed (failed = 1) and later appends do nothing; the writer checks once at the end. */
typedef struct tg_text {
    char *data;
    size_t length, capacity;
    int failed;
} tg_text;

void tg_text_append(tg_text *text, const char *bytes, size_t length);
void tg_text_appendf(tg_text *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_text_free(tg_text *text);

/* Appends `s` as a JSON string literal: quotes, escapes for '"', '\\' and control
 * characters; UTF-8 is kept as is (it must be valid: see tg_utf8_valid). */
void tg_json_append_string(tg_text *text, const char *s);

/* Appends a double in the shortest of %.15g / %.17g that reads back exactly. */
void tg_json_append_number(tg_text *text, double value);

/* 1 when the NUL-terminated `s` is valid UTF-8 (no overlongs, no surrogates). */
int tg_utf8_valid(const char *s, size_t length);

#endif
