/* manifest.c: the manifest's JSON form, written and read back with checks.
 *
 * The file (version 1) is an object:
 *   "version": 1, "root": absolute folder, "task": classification|segmentation|detection,
 *   "layout": how the scan read the folder, "classes": [names],
 *   "split": {"seed": int, "ratios": [train, val, test], "from_folders": bool},
 *   "samples": [{"path", "split": train|val|test, "content_hash": 16 hex digits (XXH64),
 *                "size_bytes", then "label" (classification) | "mask" (segmentation) |
 *                "annotation" + "boxes": [[label, x_min, y_min, x_max, y_max], ...]
 *                (detection, fractions of the image size), and "width", "height",
 *                "channels" once probed}],
 *   "notes": [{"path", "reason"}]  (what the scan skipped and why).
 * Paths are relative to root. Each sample and note is written on one line so that
 * large manifests stay readable with grep and diff. Reading refuses anything else
 * with "FILE:LINE:COLUMN: field: what is wrong". It does not touch the images. */
#include "dataset.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const task_names[] = {"classification", "segmentation", "detection"};
static const char *const split_names[] = {"train", "val", "test"};
static const char *const layout_names[] = {"class_folders", "collections", "csv", "segmentation",
                                           "coco", "yolo", "voc"};

const char *tg_task_name(tg_task task) { return (unsigned)task < 3 ? task_names[task] : "?"; }
const char *tg_split_name(tg_split split) { return (unsigned)split < TG_SPLIT_COUNT ? split_names[split] : "none"; }
const char *tg_layout_name(tg_layout layout) { return (unsigned)layout < TG_LAYOUT_COUNT ? layout_names[layout] : "?"; }

void tg_manifest_free(tg_manifest *manifest)
{
    free(manifest->root);
    for (int32_t i = 0; manifest->classes && i < manifest->n_classes; i++) free(manifest->classes[i]);
    free(manifest->classes);
    for (int64_t i = 0; manifest->samples && i < manifest->n_samples; i++) {
        tg_sample *s = &manifest->samples[i];
        free(s->path);
        free(s->mask);
        free(s->annotation);
        free(s->boxes);
    }
    free(manifest->samples);
    for (int64_t i = 0; manifest->notes && i < manifest->n_notes; i++) {
        free(manifest->notes[i].path);
        free(manifest->notes[i].reason);
    }
    free(manifest->notes);
    memset(manifest, 0, sizeof *manifest);
}

tg_status tg_manifest_add_note(tg_manifest *manifest, const char *path, const char *reason)
{
    int64_t n = manifest->n_notes;
    if ((n & (n - 1)) == 0) { /* capacity doubles at powers of two */
        tg_note *bigger = realloc(manifest->notes, (size_t)(n ? 2 * n : 1) * sizeof *bigger);
        if (!bigger) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld notes", (long long)n + 1);
        manifest->notes = bigger;
    }
    char *p = strdup(path), *r = strdup(reason);
    if (!p || !r) {
        free(p);
        free(r);
        return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a note");
    }
    manifest->notes[n].path = p;
    manifest->notes[n].reason = r;
    manifest->n_notes = n + 1;
    return TG_STATUS_OK;
}

/* ---- writing ---- */

tg_status tg_manifest_to_json(const tg_manifest *m, tg_text *out)
{
    memset(out, 0, sizeof *out);
    tg_text_appendf(out, "{\n  \"version\": %d,\n  \"root\": ", m->version ? m->version : TG_MANIFEST_VERSION);
    tg_json_append_string(out, m->root ? m->root : "");
    tg_text_appendf(out, ",\n  \"task\": \"%s\",\n  \"layout\": \"%s\",\n  \"classes\": [", tg_task_name(m->task),
                    tg_layout_name(m->layout));
    for (int32_t i = 0; i < m->n_classes; i++) {
        tg_text_append(out, i ? ",\n    " : "\n    ", 5 + (i ? 1 : 0));
        tg_json_append_string(out, m->classes[i]);
    }
    tg_text_appendf(out, "%s],\n  \"split\": {\"seed\": %llu, \"ratios\": [", m->n_classes ? "\n  " : "",
                    (unsigned long long)m->split_seed);
    for (int s = 0; s < TG_SPLIT_COUNT; s++) {
        if (s) tg_text_append(out, ", ", 2);
        tg_json_append_number(out, m->split_ratios[s]);
    }
    tg_text_appendf(out, "], \"from_folders\": %s},\n  \"samples\": [", m->splits_from_folders ? "true" : "false");
    for (int64_t i = 0; i < m->n_samples; i++) {
        const tg_sample *s = &m->samples[i];
        tg_text_append(out, i ? ",\n    {\"path\": " : "\n    {\"path\": ", i ? 15 : 14);
        tg_json_append_string(out, s->path);
        tg_text_appendf(out, ", \"split\": \"%s\", \"content_hash\": \"%016llx\", \"size_bytes\": %lld",
                        tg_split_name(s->split), (unsigned long long)s->content_hash, (long long)s->size_bytes);
        if (m->task == TG_TASK_CLASSIFICATION) tg_text_appendf(out, ", \"label\": %d", s->label);
        if (m->task == TG_TASK_SEGMENTATION) {
            tg_text_append(out, ", \"mask\": ", 10);
            tg_json_append_string(out, s->mask ? s->mask : "");
        }
        if (m->task == TG_TASK_DETECTION) {
            tg_text_append(out, ", \"annotation\": ", 16);
            tg_json_append_string(out, s->annotation ? s->annotation : "");
            tg_text_append(out, ", \"boxes\": [", 12);
            for (int64_t b = 0; b < s->n_boxes; b++) {
                const tg_box *box = &s->boxes[b];
                tg_text_appendf(out, "%s[%d, ", b ? ", " : "", box->label);
                double corners[4] = {box->x_min, box->y_min, box->x_max, box->y_max};
                for (int k = 0; k < 4; k++) {
                    if (k) tg_text_append(out, ", ", 2);
                    tg_json_append_number(out, corners[k]);
                }
                tg_text_append(out, "]", 1);
            }
            tg_text_append(out, "]", 1);
        }
        if (s->width > 0)
            tg_text_appendf(out, ", \"width\": %lld, \"height\": %lld, \"channels\": %lld", (long long)s->width,
                            (long long)s->height, (long long)s->channels);
        tg_text_append(out, "}", 1);
    }
    tg_text_appendf(out, "%s],\n  \"notes\": [", m->n_samples ? "\n  " : "");
    for (int64_t i = 0; i < m->n_notes; i++) {
        tg_text_append(out, i ? ",\n    {\"path\": " : "\n    {\"path\": ", i ? 15 : 14);
        tg_json_append_string(out, m->notes[i].path);
        tg_text_append(out, ", \"reason\": ", 12);
        tg_json_append_string(out, m->notes[i].reason);
        tg_text_append(out, "}", 1);
    }
    tg_text_appendf(out, "%s]\n}\n", m->n_notes ? "\n  " : "");
    if (out->failed) {
        tg_text_free(out);
        return tg_error(TG_STATUS_NOMEM, "manifest: no memory for the JSON text of %lld samples",
                        (long long)m->n_samples);
    }
    return TG_STATUS_OK;
}

tg_status tg_manifest_write(const tg_manifest *manifest, const char *path)
{
    tg_text text;
    TG_TRY(tg_manifest_to_json(manifest, &text));
    FILE *f = fopen(path, "wb");
    if (!f) {
        tg_text_free(&text);
        return tg_error(TG_STATUS_IO, "manifest: cannot write %s (%s); check the folder exists and is writable", path,
                        strerror(errno));
    }
    size_t written = fwrite(text.data, 1, text.length, f);
    int failed = written != text.length;
    failed |= fclose(f) != 0;
    tg_text_free(&text);
    if (failed) return tg_error(TG_STATUS_IO, "manifest: writing %s failed (disk full?)", path);
    return TG_STATUS_OK;
}

/* ---- reading ---- */

typedef struct reader {
    const char *name;
} reader;

static tg_status field_error(const reader *r, const tg_json_value *at, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static tg_status field_error(const reader *r, const tg_json_value *at, const char *field, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: %s", r->name, at->line, at->column, field, what);
}

/* The member `key` of `object` with kind `kind`; missing or wrong kinds are errors. */
static tg_status member(const reader *r, const tg_json_value *object, const char *object_field, const char *key,
                        tg_json_kind kind, const tg_json_value **out)
{
    const tg_json_value *v = tg_json_get(object, key);
    if (!v) return field_error(r, object, object_field, "the key \"%s\" is missing", key);
    if (v->kind != kind) {
        char field[160];
        snprintf(field, sizeof field, "%s.%s", object_field, key);
        return field_error(r, v, field, "expected a %s, got a %s", tg_json_kind_name(kind), tg_json_kind_name(v->kind));
    }
    *out = v;
    return TG_STATUS_OK;
}

static tg_status copy_string(const reader *r, const tg_json_value *v, const char *field, char **out)
{
    if (strlen(v->string) != v->string_length) return field_error(r, v, field, "the string holds a NUL character");
    *out = strdup(v->string);
    if (!*out) return tg_error(TG_STATUS_NOMEM, "%s: no memory", r->name);
    return TG_STATUS_OK;
}

static tg_status read_enum(const reader *r, const tg_json_value *v, const char *field, const char *const *names,
                           int count, int *out)
{
    for (int i = 0; i < count; i++)
        if (strcmp(v->string, names[i]) == 0) {
            *out = i;
            return TG_STATUS_OK;
        }
    char choices[160] = "";
    for (int i = 0; i < count; i++) {
        strncat(choices, i ? ", " : "", sizeof choices - strlen(choices) - 1);
        strncat(choices, names[i], sizeof choices - strlen(choices) - 1);
    }
    return field_error(r, v, field, "\"%s\" is not one of %s", v->string, choices);
}

static tg_status read_integer(const reader *r, const tg_json_value *v, const char *field, int64_t low, int64_t high,
                              int64_t *out)
{
    if (v->kind != TG_JSON_KIND_NUMBER || !v->is_integer)
        return field_error(r, v, field, "expected an integer, got a %s", tg_json_kind_name(v->kind));
    if (v->integer < low || v->integer > high)
        return field_error(r, v, field, "%lld is out of the range [%lld, %lld]", (long long)v->integer,
                           (long long)low, (long long)high);
    *out = v->integer;
    return TG_STATUS_OK;
}

static tg_status read_relative_path(const reader *r, const tg_json_value *sample, const char *field, const char *key,
                                    char **out)
{
    const tg_json_value *v;
    TG_TRY(member(r, sample, field, key, TG_JSON_KIND_STRING, &v));
    if (v->string_length == 0 || v->string[0] == '/')
        return field_error(r, v, field, "\"%s\" must be a non-empty path relative to the root", key);
    return copy_string(r, v, field, out);
}

static tg_status read_boxes(const reader *r, const tg_json_value *boxes, const char *field, int32_t n_classes,
                            tg_sample *s)
{
    if (boxes->count == 0) return TG_STATUS_OK;
    s->boxes = calloc((size_t)boxes->count, sizeof *s->boxes);
    if (!s->boxes) return tg_error(TG_STATUS_NOMEM, "%s: no memory for boxes", r->name);
    s->n_boxes = boxes->count;
    for (int64_t b = 0; b < boxes->count; b++) {
        const tg_json_value *box = &boxes->items[b];
        char box_field[160];
        snprintf(box_field, sizeof box_field, "%s.boxes[%lld]", field, (long long)b);
        if (box->kind != TG_JSON_KIND_ARRAY || box->count != 5)
            return field_error(r, box, box_field, "expected [label, x_min, y_min, x_max, y_max]");
        int64_t label = 0;
        TG_TRY(read_integer(r, &box->items[0], box_field, 0, n_classes - 1, &label));
        double c[4];
        for (int k = 0; k < 4; k++) {
            if (box->items[k + 1].kind != TG_JSON_KIND_NUMBER)
                return field_error(r, &box->items[k + 1], box_field, "corner %d is a %s, expected a number", k,
                                   tg_json_kind_name(box->items[k + 1].kind));
            c[k] = box->items[k + 1].number;
        }
        if (!(c[0] <= c[2] && c[1] <= c[3]))
            return field_error(r, box, box_field, "x_min <= x_max and y_min <= y_max must hold");
        s->boxes[b] = (tg_box){(int32_t)label, c[0], c[1], c[2], c[3]};
    }
    return TG_STATUS_OK;
}

static tg_status read_sample(const reader *r, const tg_json_value *v, int64_t index, tg_manifest *m)
{
    char field[128];
    snprintf(field, sizeof field, "samples[%lld]", (long long)index);
    if (v->kind != TG_JSON_KIND_OBJECT) return field_error(r, v, field, "expected an object");
    tg_sample *s = &m->samples[index];
    s->label = -1;
    s->split = TG_SPLIT_NONE;
    TG_TRY(read_relative_path(r, v, field, "path", &s->path));
    const tg_json_value *x;
    int split;
    TG_TRY(member(r, v, field, "split", TG_JSON_KIND_STRING, &x));
    TG_TRY(read_enum(r, x, field, split_names, TG_SPLIT_COUNT, &split));
    s->split = (tg_split)split;
    TG_TRY(member(r, v, field, "content_hash", TG_JSON_KIND_STRING, &x));
    char *end = NULL;
    if (x->string_length != 16 || strspn(x->string, "0123456789abcdef") != 16)
        return field_error(r, x, field, "content_hash must be 16 lowercase hex digits, got \"%s\"", x->string);
    s->content_hash = strtoull(x->string, &end, 16);
    TG_TRY(member(r, v, field, "size_bytes", TG_JSON_KIND_NUMBER, &x));
    TG_TRY(read_integer(r, x, field, 0, INT64_MAX, &s->size_bytes));
    if (m->task == TG_TASK_CLASSIFICATION) {
        int64_t label = 0;
        TG_TRY(member(r, v, field, "label", TG_JSON_KIND_NUMBER, &x));
        if (m->n_classes == 0) return field_error(r, x, field, "a label needs classes, and \"classes\" is empty");
        TG_TRY(read_integer(r, x, field, 0, m->n_classes - 1, &label));
        s->label = (int32_t)label;
    } else if (m->task == TG_TASK_SEGMENTATION) {
        TG_TRY(read_relative_path(r, v, field, "mask", &s->mask));
    } else {
        TG_TRY(read_relative_path(r, v, field, "annotation", &s->annotation));
        TG_TRY(member(r, v, field, "boxes", TG_JSON_KIND_ARRAY, &x));
        TG_TRY(read_boxes(r, x, field, m->n_classes, s));
    }
    static const char *const size_keys[3] = {"width", "height", "channels"};
    int64_t *sizes[3] = {&s->width, &s->height, &s->channels};
    for (int k = 0; k < 3; k++) {
        x = tg_json_get(v, size_keys[k]);
        if (x) TG_TRY(read_integer(r, x, field, 1, INT32_MAX, sizes[k]));
    }
    return TG_STATUS_OK;
}

static tg_status read_document(const reader *r, const tg_json_value *doc, tg_manifest *m)
{
    if (doc->kind != TG_JSON_KIND_OBJECT) return field_error(r, doc, "manifest", "expected an object at the top");
    const tg_json_value *v = NULL;
    int64_t integer = 0;
    int choice = 0;
    TG_TRY(member(r, doc, "manifest", "version", TG_JSON_KIND_NUMBER, &v));
    TG_TRY(read_integer(r, v, "version", 1, INT32_MAX, &integer));
    if (integer != TG_MANIFEST_VERSION)
        return field_error(r, v, "version", "manifest version %lld; this trugrade reads version %d (scan the folder again)",
                           (long long)integer, TG_MANIFEST_VERSION);
    m->version = (int)integer;
    TG_TRY(member(r, doc, "manifest", "root", TG_JSON_KIND_STRING, &v));
    TG_TRY(copy_string(r, v, "root", &m->root));
    TG_TRY(member(r, doc, "manifest", "task", TG_JSON_KIND_STRING, &v));
    TG_TRY(read_enum(r, v, "task", task_names, 3, &choice));
    m->task = (tg_task)choice;
    TG_TRY(member(r, doc, "manifest", "layout", TG_JSON_KIND_STRING, &v));
    TG_TRY(read_enum(r, v, "layout", layout_names, TG_LAYOUT_COUNT, &choice));
    m->layout = (tg_layout)choice;

    TG_TRY(member(r, doc, "manifest", "classes", TG_JSON_KIND_ARRAY, &v));
    if (v->count > INT32_MAX) return field_error(r, v, "classes", "too many classes");
    m->classes = calloc((size_t)v->count + 1, sizeof *m->classes);
    if (!m->classes) return tg_error(TG_STATUS_NOMEM, "%s: no memory for classes", r->name);
    for (int64_t i = 0; i < v->count; i++) {
        const tg_json_value *c = &v->items[i];
        char field[64];
        snprintf(field, sizeof field, "classes[%lld]", (long long)i);
        if (c->kind != TG_JSON_KIND_STRING || c->string_length == 0)
            return field_error(r, c, field, "a class name must be a non-empty string");
        for (int64_t j = 0; j < i; j++)
            if (strcmp(m->classes[j], c->string) == 0)
                return field_error(r, c, field, "class \"%s\" appears twice", c->string);
        TG_TRY(copy_string(r, c, field, &m->classes[i]));
        m->n_classes = (int32_t)(i + 1);
    }

    TG_TRY(member(r, doc, "manifest", "split", TG_JSON_KIND_OBJECT, &v));
    const tg_json_value *x;
    TG_TRY(member(r, v, "split", "seed", TG_JSON_KIND_NUMBER, &x));
    TG_TRY(read_integer(r, x, "split.seed", 0, INT64_MAX, &integer));
    m->split_seed = (uint64_t)integer;
    TG_TRY(member(r, v, "split", "ratios", TG_JSON_KIND_ARRAY, &x));
    if (x->count != TG_SPLIT_COUNT) return field_error(r, x, "split.ratios", "expected [train, val, test]");
    double sum = 0;
    for (int s = 0; s < TG_SPLIT_COUNT; s++) {
        const tg_json_value *ratio = &x->items[s];
        if (ratio->kind != TG_JSON_KIND_NUMBER || ratio->number < 0 || ratio->number > 1)
            return field_error(r, ratio, "split.ratios", "each ratio must be a number in [0, 1]");
        m->split_ratios[s] = ratio->number;
        sum += ratio->number;
    }
    if (sum < 1 - 1e-6 || sum > 1 + 1e-6) return field_error(r, x, "split.ratios", "the ratios sum to %g, not 1", sum);
    TG_TRY(member(r, v, "split", "from_folders", TG_JSON_KIND_BOOL, &x));
    m->splits_from_folders = x->boolean;

    TG_TRY(member(r, doc, "manifest", "samples", TG_JSON_KIND_ARRAY, &v));
    m->samples = calloc((size_t)v->count + 1, sizeof *m->samples);
    if (!m->samples) return tg_error(TG_STATUS_NOMEM, "%s: no memory for %lld samples", r->name, (long long)v->count);
    for (int64_t i = 0; i < v->count; i++) {
        m->n_samples = i + 1;
        TG_TRY(read_sample(r, &v->items[i], i, m));
    }

    TG_TRY(member(r, doc, "manifest", "notes", TG_JSON_KIND_ARRAY, &v));
    for (int64_t i = 0; i < v->count; i++) {
        const tg_json_value *note = &v->items[i], *path, *reason;
        char field[64];
        snprintf(field, sizeof field, "notes[%lld]", (long long)i);
        if (note->kind != TG_JSON_KIND_OBJECT) return field_error(r, note, field, "expected an object");
        TG_TRY(member(r, note, field, "path", TG_JSON_KIND_STRING, &path));
        TG_TRY(member(r, note, field, "reason", TG_JSON_KIND_STRING, &reason));
        TG_TRY(tg_manifest_add_note(m, path->string, reason->string));
    }
    return TG_STATUS_OK;
}

tg_status tg_manifest_parse(const char *text, size_t length, const char *name, tg_manifest *out)
{
    memset(out, 0, sizeof *out);
    tg_json_value doc;
    TG_TRY(tg_json_parse(text, length, name, &doc));
    reader r = {.name = name ? name : "<manifest>"};
    tg_status status = read_document(&r, &doc, out);
    tg_json_free(&doc);
    if (status != TG_STATUS_OK) tg_manifest_free(out);
    return status;
}

tg_status tg_manifest_read(const char *path, tg_manifest *out)
{
    memset(out, 0, sizeof *out);
    tg_json_value doc;
    tg_status status = tg_json_parse_file(path, &doc);
    if (status == TG_STATUS_IO)
        return tg_error(TG_STATUS_IO, "manifest: cannot read %s; write one with trugrade.data.scan(folder).save(path)",
                        path);
    TG_TRY(status);
    reader r = {.name = path};
    status = read_document(&r, &doc, out);
    tg_json_free(&doc);
    if (status != TG_STATUS_OK) tg_manifest_free(out);
    return status;
}
