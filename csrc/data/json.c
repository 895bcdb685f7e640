/* json.c: the strict JSON reader and the text buffer of json.h.
 * A recursive-descent parser over an in-memory text; it does not write JSON
 * documents itself (the manifest writer does, with tg_text and the helpers here). */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_parser {
    const char *text;
    size_t length, pos;
    int line;
    size_t line_start;   /* offset of the current line's first byte */
    const char *name;
    int depth;
} json_parser;

static int column_at(const json_parser *p, size_t pos) { return (int)(pos - p->line_start) + 1; }

static tg_status parse_error(const json_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static tg_status parse_error(const json_parser *p, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s", p->name, p->line, column_at(p, p->pos), what);
}

/* A printable description of the byte at the cursor, for messages. */
static const char *describe_here(const json_parser *p, char buffer[16])
{
    if (p->pos >= p->length) return "the end of the text";
    unsigned char c = (unsigned char)p->text[p->pos];
    if (c >= 0x20 && c < 0x7f) snprintf(buffer, 16, "'%c'", c);
    else snprintf(buffer, 16, "byte 0x%02x", c);
    return buffer;
}

static void skip_space(json_parser *p)
{
    while (p->pos < p->length) {
        char c = p->text[p->pos];
        if (c == '\n') {
            p->pos++;
            p->line++;
            p->line_start = p->pos;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            p->pos++;
        } else {
            break;
        }
    }
}

static tg_status parse_value(json_parser *p, tg_json_value *out);

static tg_status expect_word(json_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->length - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
        return parse_error(p, "expected '%s'; JSON has no other bare words (strings need double quotes)", word);
    p->pos += n;
    return TG_STATUS_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static tg_status parse_number(json_parser *p, tg_json_value *out)
{
    size_t start = p->pos;
    const char *t = p->text;
    int integral = 1;
    if (p->pos < p->length && t[p->pos] == '-') p->pos++;
    if (p->pos >= p->length || !is_digit(t[p->pos])) return parse_error(p, "a number needs a digit here");
    if (t[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->length && is_digit(t[p->pos])) return parse_error(p, "numbers have no leading zeros");
    } else {
        while (p->pos < p->length && is_digit(t[p->pos])) p->pos++;
    }
    if (p->pos < p->length && t[p->pos] == '.') {
        integral = 0;
        p->pos++;
        if (p->pos >= p->length || !is_digit(t[p->pos])) return parse_error(p, "a digit must follow the decimal point");
        while (p->pos < p->length && is_digit(t[p->pos])) p->pos++;
    }
    if (p->pos < p->length && (t[p->pos] == 'e' || t[p->pos] == 'E')) {
        integral = 0;
        p->pos++;
        if (p->pos < p->length && (t[p->pos] == '+' || t[p->pos] == '-')) p->pos++;
        if (p->pos >= p->length || !is_digit(t[p->pos])) return parse_error(p, "a digit must follow the exponent");
        while (p->pos < p->length && is_digit(t[p->pos])) p->pos++;
    }
    char buffer[64];
    size_t n = p->pos - start;
    if (n >= sizeof buffer) {
        p->pos = start;
        return parse_error(p, "a number of %zu characters is too long", n);
    }
    memcpy(buffer, t + start, n);
    buffer[n] = '\0';
    out->kind = TG_JSON_KIND_NUMBER;
    /* NOTE: strtod follows LC_NUMERIC; Python keeps it at "C", where '.' is the decimal point. */
    out->number = strtod(buffer, NULL);
    if (!isfinite(out->number)) {
        p->pos = start;
        return parse_error(p, "the number %s is out of the range of a double", buffer);
    }
    if (integral) {
        errno = 0;
        long long v = strtoll(buffer, NULL, 10);
        if (errno == 0) {
            out->is_integer = 1;
            out->integer = v;
        }
    }
    return TG_STATUS_OK;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(json_parser *p, unsigned *out)
{
    if (p->length - p->pos < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p->text[p->pos + i]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t encode_utf8(unsigned code, char *out)
{
    if (code < 0x80) { out[0] = (char)code; return 1; }
    if (code < 0x800) { out[0] = (char)(0xc0 | (code >> 6)); out[1] = (char)(0x80 | (code & 0x3f)); return 2; }
    if (code < 0x10000) {
        out[0] = (char)(0xe0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3f));
        out[2] = (char)(0x80 | (code & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3f));
    out[3] = (char)(0x80 | (code & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[0..avail), or 0 when invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned code;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; code = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; code = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; code = c & 0x07; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        code = (code << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && code < 0x800) || (n == 4 && (code < 0x10000 || code > 0x10ffff))) return 0;
    if (code >= 0xd800 && code <= 0xdfff) return 0;
    return n;
}

int tg_utf8_valid(const char *s, size_t length)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < length;) {
        size_t n = utf8_sequence(u + i, length - i);
        if (n == 0) return 0;
        i += n;
    }
    return 1;
}

/* Parses a string literal at the cursor (on '"') into a new NUL-terminated buffer. */
static tg_status parse_string(json_parser *p, char **out, size_t *out_length)
{
    p->pos++; /* opening quote */
    /* Escapes only shrink the text, so the raw span bounds the decoded size. */
    size_t end = p->pos;
    while (end < p->length && p->text[end] != '"') end += (p->text[end] == '\\') ? 2 : 1;
    size_t capacity = (end > p->length ? p->length : end) - p->pos + 1;
    char *buffer = malloc(capacity);
    if (!buffer) return tg_error(TG_STATUS_NOMEM, "%s: no memory for a string of %zu bytes", p->name, capacity);
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->length) {
            free(buffer);
            return parse_error(p, "the string is not closed (a '\"' is missing)");
        }
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(buffer);
            return parse_error(p, "control character 0x%02x inside a string; write it as \\u%04x", c, c);
        }
        if (c == '\\') {
            p->pos++;
            char e = p->pos < p->length ? p->text[p->pos] : '\0';
            p->pos++;
            switch (e) {
            case '"': buffer[n++] = '"'; break;
            case '\\': buffer[n++] = '\\'; break;
            case '/': buffer[n++] = '/'; break;
            case 'b': buffer[n++] = '\b'; break;
            case 'f': buffer[n++] = '\f'; break;
            case 'n': buffer[n++] = '\n'; break;
            case 'r': buffer[n++] = '\r'; break;
            case 't': buffer[n++] = '\t'; break;
            case 'u': {
                unsigned code;
                if (read_hex4(p, &code) != 0) {
                    free(buffer);
                    return parse_error(p, "\\u must be followed by four hex digits");
                }
                if (code >= 0xdc00 && code <= 0xdfff) {
                    free(buffer);
                    return parse_error(p, "lone low surrogate \\u%04x", code);
                }
                if (code >= 0xd800 && code <= 0xdbff) {
                    unsigned low;
                    if (p->length - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
                        free(buffer);
                        return parse_error(p, "high surrogate \\u%04x is not followed by a low surrogate", code);
                    }
                    p->pos += 2;
                    if (read_hex4(p, &low) != 0 || low < 0xdc00 || low > 0xdfff) {
                        free(buffer);
                        return parse_error(p, "high surrogate \\u%04x is not followed by a low surrogate", code);
                    }
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                }
                n += encode_utf8(code, buffer + n);
                break;
            }
            default:
                p->pos--;
                free(buffer);
                return parse_error(p, "unknown escape '\\%c'; JSON knows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                                   e ? e : '?');
            }
            continue;
        }
        size_t len = utf8_sequence((const unsigned char *)p->text + p->pos, p->length - p->pos);
        if (len == 0) {
            free(buffer);
            return parse_error(p, "invalid UTF-8 (byte 0x%02x); save the file as UTF-8", c);
        }
        memcpy(buffer + n, p->text + p->pos, len);
        n += len;
        p->pos += len;
    }
    buffer[n] = '\0';
    *out = buffer;
    *out_length = n;
    return TG_STATUS_OK;
}

static tg_status grow(json_parser *p, void **items, int64_t count, int64_t *capacity, size_t item_size)
{
    if (count < *capacity) return TG_STATUS_OK;
    int64_t next = *capacity ? *capacity * 2 : 4;
    void *bigger = realloc(*items, (size_t)next * item_size);
    if (!bigger) return tg_error(TG_STATUS_NOMEM, "%s: no memory for %lld JSON items", p->name, (long long)next);
    *items = bigger;
    *capacity = next;
    return TG_STATUS_OK;
}

static tg_status parse_array(json_parser *p, tg_json_value *out)
{
    out->kind = TG_JSON_KIND_ARRAY;
    p->pos++;
    int64_t capacity = 0;
    skip_space(p);
    if (p->pos < p->length && p->text[p->pos] == ']') {
        p->pos++;
        return TG_STATUS_OK;
    }
    for (;;) {
        TG_TRY(grow(p, (void **)&out->items, out->count, &capacity, sizeof *out->items));
        tg_json_value *item = &out->items[out->count];
        memset(item, 0, sizeof *item);
        out->count++;
        skip_space(p);
        TG_TRY(parse_value(p, item));
        skip_space(p);
        char here[16];
        if (p->pos < p->length && p->text[p->pos] == ',') {
            p->pos++;
            skip_space(p);
            if (p->pos < p->length && p->text[p->pos] == ']') return parse_error(p, "trailing comma before ']'");
            continue;
        }
        if (p->pos < p->length && p->text[p->pos] == ']') {
            p->pos++;
            return TG_STATUS_OK;
        }
        return parse_error(p, "expected ',' or ']' in an array, found %s", describe_here(p, here));
    }
}

static tg_status parse_object(json_parser *p, tg_json_value *out)
{
    out->kind = TG_JSON_KIND_OBJECT;
    p->pos++;
    int64_t capacity = 0;
    skip_space(p);
    if (p->pos < p->length && p->text[p->pos] == '}') {
        p->pos++;
        return TG_STATUS_OK;
    }
    for (;;) {
        char here[16];
        skip_space(p);
        if (p->pos >= p->length || p->text[p->pos] != '"')
            return parse_error(p, "expected a key in double quotes, found %s", describe_here(p, here));
        TG_TRY(grow(p, (void **)&out->members, out->count, &capacity, sizeof *out->members));
        tg_json_member *member = &out->members[out->count];
        memset(member, 0, sizeof *member);
        out->count++;
        int key_line = p->line, key_column = column_at(p, p->pos);
        size_t key_length;
        TG_TRY(parse_string(p, &member->key, &key_length));
        /* NOTE: duplicate keys are refused; the scan is quadratic in the keys of one
         * object, which stay few in the documents trugrade reads. */
        for (int64_t i = 0; i + 1 < out->count; i++) {
            if (strcmp(out->members[i].key, member->key) == 0)
                return tg_error(TG_STATUS_DATASET, "%s:%d:%d: duplicate key \"%s\" in an object", p->name, key_line,
                                key_column, member->key);
        }
        skip_space(p);
        if (p->pos >= p->length || p->text[p->pos] != ':')
            return parse_error(p, "expected ':' after the key \"%s\", found %s", member->key, describe_here(p, here));
        p->pos++;
        skip_space(p);
        TG_TRY(parse_value(p, &member->value));
        skip_space(p);
        if (p->pos < p->length && p->text[p->pos] == ',') {
            p->pos++;
            skip_space(p);
            if (p->pos < p->length && p->text[p->pos] == '}') return parse_error(p, "trailing comma before '}'");
            continue;
        }
        if (p->pos < p->length && p->text[p->pos] == '}') {
            p->pos++;
            return TG_STATUS_OK;
        }
        return parse_error(p, "expected ',' or '}' in an object, found %s", describe_here(p, here));
    }
}

static tg_status parse_value(json_parser *p, tg_json_value *out)
{
    out->line = p->line;
    out->column = column_at(p, p->pos);
    if (p->pos >= p->length) return parse_error(p, "expected a value, found the end of the text");
    char c = p->text[p->pos];
    char here[16];
    switch (c) {
    case '{':
    case '[': {
        if (++p->depth > TG_JSON_MAX_DEPTH) return parse_error(p, "nesting deeper than %d levels", TG_JSON_MAX_DEPTH);
        tg_status status = c == '{' ? parse_object(p, out) : parse_array(p, out);
        p->depth--;
        return status;
    }
    case '"':
        out->kind = TG_JSON_KIND_STRING;
        return parse_string(p, &out->string, &out->string_length);
    case 't':
        out->kind = TG_JSON_KIND_BOOL;
        out->boolean = 1;
        return expect_word(p, "true");
    case 'f':
        out->kind = TG_JSON_KIND_BOOL;
        return expect_word(p, "false");
    case 'n':
        out->kind = TG_JSON_KIND_NULL;
        return expect_word(p, "null");
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, out);
        return parse_error(p, "expected a value, found %s", describe_here(p, here));
    }
}

tg_status tg_json_parse(const char *text, size_t length, const char *name, tg_json_value *out)
{
    memset(out, 0, sizeof *out);
    json_parser p = {.text = text, .length = length, .line = 1, .name = name ? name : "<json>"};
    if (length >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) p.pos = p.line_start = 3; /* a UTF-8 BOM */
    skip_space(&p);
    tg_status status = parse_value(&p, out);
    if (status == TG_STATUS_OK) {
        skip_space(&p);
        char here[16];
        if (p.pos < p.length) status = parse_error(&p, "unexpected %s after the document's value", describe_here(&p, here));
    }
    if (status != TG_STATUS_OK) tg_json_free(out);
    return status;
}

tg_status tg_json_parse_file(const char *path, tg_json_value *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return tg_error(TG_STATUS_IO, "%s: cannot open (%s)", path, strerror(errno));
    tg_text text = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tg_text_append(&text, chunk, n);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        tg_text_free(&text);
        return tg_error(TG_STATUS_IO, "%s: read error", path);
    }
    if (text.failed) {
        tg_text_free(&text);
        return tg_error(TG_STATUS_NOMEM, "%s: no memory to read the file", path);
    }
    tg_status status = tg_json_parse(text.data ? text.data : "", text.length, path, out);
    tg_text_free(&text);
    return status;
}

void tg_json_free(tg_json_value *value)
{
    if (!value) return;
    free(value->string);
    for (int64_t i = 0; value->items && i < value->count; i++) tg_json_free(&value->items[i]);
    free(value->items);
    for (int64_t i = 0; value->members && i < value->count; i++) {
        free(value->members[i].key);
        tg_json_free(&value->members[i].value);
    }
    free(value->members);
    memset(value, 0, sizeof *value);
}

const tg_json_value *tg_json_get(const tg_json_value *object, const char *key)
{
    if (!object || object->kind != TG_JSON_KIND_OBJECT) return NULL;
    for (int64_t i = 0; i < object->count; i++)
        if (strcmp(object->members[i].key, key) == 0) return &object->members[i].value;
    return NULL;
}

const char *tg_json_kind_name(tg_json_kind kind)
{
    switch (kind) {
    case TG_JSON_KIND_NULL: return "null";
    case TG_JSON_KIND_BOOL: return "boolean";
    case TG_JSON_KIND_NUMBER: return "number";
    case TG_JSON_KIND_STRING: return "string";
    case TG_JSON_KIND_ARRAY: return "array";
    case TG_JSON_KIND_OBJECT: return "object";
    }
    return "?";
}

/* ---- writing ---- */

static int text_reserve(tg_text *text, size_t extra)
{
    if (text->failed) return -1;
    if (text->length + extra + 1 <= text->capacity) return 0;
    size_t capacity = text->capacity ? text->capacity : 256;
    while (capacity < text->length + extra + 1) capacity *= 2;
    char *bigger = realloc(text->data, capacity);
    if (!bigger) {
        text->failed = 1;
        return -1;
    }
    text->data = bigger;
    text->capacity = capacity;
    return 0;
}

void tg_text_append(tg_text *text, const char *bytes, size_t length)
{
    if (text_reserve(text, length) != 0) return;
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
    text->data[text->length] = '\0';
}

void tg_text_appendf(tg_text *text, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        tg_text_append(text, small, (size_t)n);
        return;
    }
    if (text_reserve(text, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(text->data + text->length, (size_t)n + 1, fmt, ap);
    va_end(ap);
    text->length += (size_t)n;
}

void tg_text_free(tg_text *text)
{
    free(text->data);
    memset(text, 0, sizeof *text);
}

void tg_json_append_string(tg_text *text, const char *s)
{
    tg_text_append(text, "\"", 1);
    const char *run = s;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u >= 0x20 && u != '"' && u != '\\') continue;
        tg_text_append(text, run, (size_t)(c - run));
        switch (u) {
        case '"': tg_text_append(text, "\\\"", 2); break;
        case '\\': tg_text_append(text, "\\\\", 2); break;
        case '\n': tg_text_append(text, "\\n", 2); break;
        case '\r': tg_text_append(text, "\\r", 2); break;
        case '\t': tg_text_append(text, "\\t", 2); break;
        default: tg_text_appendf(text, "\\u%04x", u); break;
        }
        run = c + 1;
    }
    tg_text_append(text, run, strlen(run));
    tg_text_append(text, "\"", 1);
}

void tg_json_append_number(tg_text *text, double value)
{
    char buffer[40];
    snprintf(buffer, sizeof buffer, "%.15g", value);
    if (strtod(buffer, NULL) != value) snprintf(buffer, sizeof buffer, "%.17g", value);
    tg_text_append(text, buffer, strlen(buffer));
}
