/* dataset_detection.c: the detection layouts of the scan: YOLO, Pascal VOC and COCO.
 *
 * Boxes end up in one form whatever the source: [label, x_min, y_min, x_max, y_max]
 * as fractions of the image's width and height, labels indexing the sorted class
 * names (source class ids are remapped).
 *  - YOLO: a .yaml/.yml at the root whose `names` is a list or an {id: name} map
 *    (read with libyaml), and a labels/ folder. The label file of
 *    ".../images/.../x.jpg" is ".../labels/.../x.txt" (the last "images" component
 *    replaced); lines are "class cx cy w h" (already fractions). An image without a
 *    label file is a background image (no boxes). A split folder anywhere in the
 *    image's path (images/train/, train/images/) gives its split.
 *  - VOC: an Annotations/ folder of .xml files at the root; each file's <filename> is looked up in
 *    JPEGImages/ or images/ (then by the xml's stem); <size> gives the scale. The
 *    XML reader knows elements, text, the five predefined entities, comments,
 *    declarations and attributes (ignored): enough for VOC's fixed tags, not XML at large.
 *  - COCO: a .json at the root or in annotations/ with "images", "annotations" and
 *    "categories"; file_name is looked up beside the json, in images/,
 *    images/<split>/ and the root. A json named like a split (instances_val2017.json)
 *    gives its images that split. A COCO file that is malformed stops the scan with
 *    its line and column, since silently dropping boxes would corrupt training.
 * Annotation problems local to one file or image (a bad line, a missing image) are notes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "scan_tree.h"

static tg_status add_box(tg_sample *s, int32_t label, double x_min, double y_min, double x_max, double y_max)
{
    if ((s->n_boxes & (s->n_boxes - 1)) == 0) {
        tg_box *bigger = realloc(s->boxes, (size_t)(s->n_boxes ? 2 * s->n_boxes : 1) * sizeof *bigger);
        if (!bigger) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for boxes of %s", s->path);
        s->boxes = bigger;
    }
    s->boxes[s->n_boxes++] = (tg_box){label, x_min, y_min, x_max, y_max};
    return TG_STATUS_OK;
}

static tg_split split_in_path(const char *path)
{
    char component[256];
    const char *start = path;
    for (;;) {
        const char *slash = strchr(start, '/');
        if (!slash) return TG_SPLIT_NONE; /* the last component is the file name */
        size_t n = (size_t)(slash - start);
        if (n < sizeof component) {
            memcpy(component, start, n);
            component[n] = '\0';
            tg_split s = scan_split_from_name(component);
            if (s != TG_SPLIT_NONE) return s;
        }
        start = slash + 1;
    }
}

static int is_name_ci(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* ---- YOLO ---- */

typedef struct yolo_names {
    char **names;      /* [count] indexed by YOLO class id (NULL where the map skips an id) */
    int64_t count;
} yolo_names;

static void yolo_names_free(yolo_names *y)
{
    for (int64_t i = 0; i < y->count; i++) free(y->names[i]);
    free(y->names);
    memset(y, 0, sizeof *y);
}

static tg_status yolo_set_name(yolo_names *y, int64_t id, const char *name)
{
    if (id < 0 || id > 100000) return tg_error(TG_STATUS_DATASET, "class id %lld is out of range", (long long)id);
    if (id >= y->count) {
        char **bigger = realloc(y->names, (size_t)(id + 1) * sizeof *bigger);
        if (!bigger) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for class names");
        for (int64_t i = y->count; i <= id; i++) bigger[i] = NULL;
        y->names = bigger;
        y->count = id + 1;
    }
    free(y->names[id]);
    y->names[id] = strdup(name);
    return y->names[id] ? TG_STATUS_OK : tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for class names");
}

/* Reads `names` from a YAML file; *found = 0 when the file has no `names` at the top. */
static tg_status read_yolo_yaml(const char *path, yolo_names *out, int *found)
{
    *found = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return tg_error(TG_STATUS_IO, "%s: cannot open (%s)", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t document;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return tg_error(TG_STATUS_NOMEM, "dataset scan: libyaml could not start");
    }
    yaml_parser_set_input_file(&parser, f);
    tg_status status = TG_STATUS_OK;
    if (!yaml_parser_load(&parser, &document)) {
        status = tg_error(TG_STATUS_DATASET, "%s:%zu:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
                          parser.problem_mark.column + 1, parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        fclose(f);
        return status;
    }
    yaml_node_t *root = yaml_document_get_root_node(&document);
    if (root && root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
            yaml_node_t *key = yaml_document_get_node(&document, pair->key);
            yaml_node_t *value = yaml_document_get_node(&document, pair->value);
            if (!key || key->type != YAML_SCALAR_NODE || strcmp((char *)key->data.scalar.value, "names") != 0) continue;
            *found = 1;
            if (value->type == YAML_SEQUENCE_NODE) {
                int64_t id = 0;
                for (yaml_node_item_t *item = value->data.sequence.items.start;
                     item < value->data.sequence.items.top && status == TG_STATUS_OK; item++, id++) {
                    yaml_node_t *name = yaml_document_get_node(&document, *item);
                    if (!name || name->type != YAML_SCALAR_NODE)
                        status = tg_error(TG_STATUS_DATASET, "%s:%zu: names[%lld] is not a plain name", path,
                                          name ? name->start_mark.line + 1 : 0, (long long)id);
                    else status = yolo_set_name(out, id, (char *)name->data.scalar.value);
                }
            } else if (value->type == YAML_MAPPING_NODE) {
                for (yaml_node_pair_t *p = value->data.mapping.pairs.start;
                     p < value->data.mapping.pairs.top && status == TG_STATUS_OK; p++) {
                    yaml_node_t *k = yaml_document_get_node(&document, p->key);
                    yaml_node_t *v = yaml_document_get_node(&document, p->value);
                    char *end = NULL;
                    long long id = k && k->type == YAML_SCALAR_NODE ? strtoll((char *)k->data.scalar.value, &end, 10) : -1;
                    if (!end || *end != '\0' || !v || v->type != YAML_SCALAR_NODE)
                        status = tg_error(TG_STATUS_DATASET, "%s:%zu: names must map class ids (0, 1, ...) to names",
                                          path, k ? k->start_mark.line + 1 : 0);
                    else status = yolo_set_name(out, id, (char *)v->data.scalar.value);
                }
            } else {
                status = tg_error(TG_STATUS_DATASET, "%s:%zu: names must be a list or a map of class names", path,
                                  value->start_mark.line + 1);
            }
        }
    }
    yaml_document_delete(&document);
    yaml_parser_delete(&parser);
    fclose(f);
    if (status == TG_STATUS_DATASET && strstr(tg_error_message(), "out of range"))
        status = tg_error(TG_STATUS_DATASET, "%s: a class id in names is out of range", path);
    return status;
}

/* ".../images/a/x.jpg" -> ".../labels/a/x.txt"; NULL when no "images" component. */
static char *yolo_label_path(const char *image_path)
{
    const char *last = NULL;
    for (const char *p = image_path; (p = strstr(p, "images")) != NULL; p++)
        if ((p == image_path || p[-1] == '/') && p[6] == '/') last = p;
    if (!last) return NULL;
    const char *dot = strrchr(image_path, '.');
    size_t stem_length = (size_t)(dot - image_path);
    char *out = malloc(stem_length + 8);
    if (!out) return NULL;
    memcpy(out, image_path, stem_length);
    memcpy(out + (last - image_path), "labels", 6);
    strcpy(out + stem_length, ".txt");
    return out;
}

static tg_status read_yolo_labels(scan_tree *tree, tg_sample *s, int64_t label_entry, const int32_t *remap,
                                  int64_t n_ids)
{
    const char *label_path = tree->entries[label_entry].path;
    char *full = scan_full_path(tree, label_path);
    if (!full) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    FILE *f = fopen(full, "r");
    free(full);
    if (!f) return scan_note(tree, label_path, "cannot be read (%s); boxes of %s missing", strerror(errno), s->path);
    char line[1024];
    int line_number = 0;
    tg_status status = TG_STATUS_OK;
    while (status == TG_STATUS_OK && fgets(line, sizeof line, f)) {
        line_number++;
        double v[5];
        char extra;
        if (line[strspn(line, " \t\r\n")] == '\0') continue; /* a blank line */
        int got = sscanf(line, "%lf %lf %lf %lf %lf %c", &v[0], &v[1], &v[2], &v[3], &v[4], &extra);
        int64_t id = (int64_t)v[0];
        if (got != 5 || v[0] != (double)id) {
            status = scan_note(tree, label_path, "line %d: expected \"class cx cy w h\"; line skipped", line_number);
        } else if (id < 0 || id >= n_ids || remap[id] < 0) {
            status = scan_note(tree, label_path, "line %d: class %lld is not in the yaml's names; line skipped",
                               line_number, (long long)id);
        } else {
            status = add_box(s, remap[id], v[1] - v[3] / 2, v[2] - v[4] / 2, v[1] + v[3] / 2, v[2] + v[4] / 2);
        }
    }
    fclose(f);
    return status;
}

tg_status scan_try_yolo(scan_tree *tree, int *applied)
{
    int has_labels = 0;
    for (int64_t i = 1; i < tree->n_entries; i++)
        has_labels |= tree->entries[i].is_dir && is_name_ci(tree->entries[i].name, "labels");
    if (!has_labels) return TG_STATUS_OK;
    yolo_names y = {0};
    int64_t yaml_entry = -1;
    for (int64_t i = 1; i < tree->n_entries && yaml_entry < 0; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->is_dir || e->parent != 0 || !(scan_has_extension(e->name, "yaml") || scan_has_extension(e->name, "yml")))
            continue;
        char *full = scan_full_path(tree, e->path);
        if (!full) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        int found;
        tg_status status = read_yolo_yaml(full, &y, &found);
        free(full);
        if (status != TG_STATUS_OK) {
            yolo_names_free(&y);
            return status;
        }
        if (found) yaml_entry = i;
    }
    if (yaml_entry < 0) return TG_STATUS_OK;
    tree->entries[yaml_entry].used = 1;
    tg_status status = TG_STATUS_OK;
    char **sorted = malloc((size_t)(y.count + 1) * sizeof *sorted);
    int32_t *remap = malloc((size_t)(y.count + 1) * sizeof *remap); /* [ids] YOLO id -> class index */
    int64_t n_named = 0;
    if (!sorted || !remap) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for class names");
    for (int64_t i = 0; status == TG_STATUS_OK && i < y.count; i++) if (y.names[i]) sorted[n_named++] = y.names[i];
    if (status == TG_STATUS_OK && n_named == 0)
        status = tg_error(TG_STATUS_DATASET, "dataset scan: %s has an empty `names`; list the class names",
                          tree->entries[yaml_entry].path);
    if (status == TG_STATUS_OK) status = scan_set_classes(tree, sorted, n_named);
    for (int64_t i = 0; status == TG_STATUS_OK && i < y.count; i++)
        remap[i] = y.names[i] ? scan_class_index(tree->manifest, y.names[i]) : -1;
    for (int64_t i = 1; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->is_dir || !e->is_image) continue;
        char *label_path = yolo_label_path(e->path);
        if (!label_path) continue; /* not under images/: a leftover */
        tg_sample *s;
        status = scan_add_sample(tree, i, -1, split_in_path(e->path), &s);
        int64_t label_entry = scan_find_file(tree, label_path);
        if (status == TG_STATUS_OK) {
            s->annotation = strdup(label_path);
            if (!s->annotation) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        }
        if (status == TG_STATUS_OK && label_entry >= 0) {
            tree->entries[label_entry].used = 1;
            status = read_yolo_labels(tree, s, label_entry, remap, y.count);
        }
        free(label_path);
    }
    if (status == TG_STATUS_OK) {
        tree->manifest->task = TG_TASK_DETECTION;
        tree->manifest->layout = TG_LAYOUT_YOLO;
        *applied = 1;
    }
    free(sorted);
    free(remap);
    yolo_names_free(&y);
    return status;
}

/* ---- a minimal XML reader for Pascal VOC ---- */

typedef struct xml_node {
    char *name;
    char *text;                 /* direct text, entities decoded, trimmed */
    struct xml_node *children;  /* [n_children] */
    int64_t n_children;
    int line;
} xml_node;

typedef struct xml_reader {
    const char *s;
    size_t pos, length;
    int line;
    const char *name;
} xml_reader;

static void xml_free(xml_node *node)
{
    free(node->name);
    free(node->text);
    for (int64_t i = 0; i < node->n_children; i++) xml_free(&node->children[i]);
    free(node->children);
}

static tg_status xml_error(const xml_reader *x, const char *what)
{
    return tg_error(TG_STATUS_DATASET, "%s:%d: XML: %s", x->name, x->line, what);
}

static void xml_advance(xml_reader *x, size_t n)
{
    for (size_t i = 0; i < n && x->pos < x->length; i++) x->line += x->s[x->pos++] == '\n';
}

/* Skips "<?...?>", "<!--...-->" and "<!...>" at the cursor; 1 when something was skipped. */
static int xml_skip_markup(xml_reader *x)
{
    const char *rest = x->s + x->pos;
    const char *end = NULL;
    size_t tail = 0;
    if (strncmp(rest, "<?", 2) == 0) { end = strstr(rest, "?>"); tail = 2; }
    else if (strncmp(rest, "<!--", 4) == 0) { end = strstr(rest, "-->"); tail = 3; }
    else if (strncmp(rest, "<!", 2) == 0) { end = strchr(rest, '>'); tail = 1; }
    else return 0;
    xml_advance(x, end ? (size_t)(end - rest) + tail : x->length - x->pos);
    return 1;
}

static void xml_append_text(tg_text *text, const char *s, size_t n)
{
    static const struct { const char *entity; char c; } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (size_t i = 0; i < n; i++) {
        int replaced = 0;
        for (size_t k = 0; k < 5 && s[i] == '&'; k++) {
            size_t len = strlen(entities[k].entity);
            if (i + len <= n && strncmp(s + i, entities[k].entity, len) == 0) {
                tg_text_append(text, &entities[k].c, 1);
                i += len - 1;
                replaced = 1;
                break;
            }
        }
        if (!replaced) tg_text_append(text, s + i, 1);
    }
}

static tg_status xml_element(xml_reader *x, xml_node *node, int depth)
{
    if (depth > 64) return xml_error(x, "nesting deeper than 64 elements");
    node->line = x->line;
    xml_advance(x, 1); /* '<' */
    size_t start = x->pos;
    while (x->pos < x->length && !strchr(" \t\r\n/>", x->s[x->pos])) x->pos++;
    if (x->pos == start) return xml_error(x, "an element without a name");
    node->name = strndup(x->s + start, x->pos - start);
    if (!node->name) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    while (x->pos < x->length && x->s[x->pos] != '>' && x->s[x->pos] != '/') {
        char quote = x->s[x->pos];
        xml_advance(x, 1);
        if (quote == '"' || quote == '\'') {
            while (x->pos < x->length && x->s[x->pos] != quote) xml_advance(x, 1);
            xml_advance(x, 1);
        }
    }
    if (x->pos >= x->length) return xml_error(x, "the file ends inside a tag");
    if (x->s[x->pos] == '/') {
        xml_advance(x, 1);
        if (x->pos >= x->length || x->s[x->pos] != '>') return xml_error(x, "expected '>' after '/'");
        xml_advance(x, 1);
        return TG_STATUS_OK;
    }
    xml_advance(x, 1);
    tg_text text = {0};
    for (;;) {
        if (x->pos >= x->length) {
            tg_text_free(&text);
            return xml_error(x, "the file ends before the element is closed");
        }
        if (x->s[x->pos] != '<') {
            size_t run = x->pos;
            while (x->pos < x->length && x->s[x->pos] != '<') xml_advance(x, 1);
            xml_append_text(&text, x->s + run, x->pos - run);
            continue;
        }
        if (xml_skip_markup(x)) continue;
        if (x->pos + 1 < x->length && x->s[x->pos + 1] == '/') {
            size_t n = strlen(node->name);
            if (strncmp(x->s + x->pos + 2, node->name, n) != 0 || x->s[x->pos + 2 + n] != '>') {
                tg_text_free(&text);
                char what[200];
                snprintf(what, sizeof what, "expected </%.100s>", node->name);
                return xml_error(x, what);
            }
            xml_advance(x, n + 3);
            break;
        }
        if ((node->n_children & (node->n_children - 1)) == 0) {
            xml_node *bigger = realloc(node->children, (size_t)(node->n_children ? 2 * node->n_children : 1) *
                                                           sizeof *bigger);
            if (!bigger) {
                tg_text_free(&text);
                return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
            }
            node->children = bigger;
        }
        xml_node *child = &node->children[node->n_children++];
        memset(child, 0, sizeof *child);
        tg_status status = xml_element(x, child, depth + 1);
        if (status != TG_STATUS_OK) {
            tg_text_free(&text);
            return status;
        }
    }
    if (text.failed) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    char *t = text.data ? text.data : strdup("");
    if (!t) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    char *begin = t;
    while (*begin && strchr(" \t\r\n", *begin)) begin++;
    size_t n = strlen(begin);
    while (n > 0 && strchr(" \t\r\n", begin[n - 1])) n--;
    memmove(t, begin, n);
    t[n] = '\0';
    node->text = t;
    return TG_STATUS_OK;
}

static tg_status xml_parse(const char *s, size_t length, const char *name, xml_node *root)
{
    memset(root, 0, sizeof *root);
    xml_reader x = {s, 0, length, 1, name};
    for (;;) {
        while (x.pos < length && strchr(" \t\r\n", s[x.pos])) xml_advance(&x, 1);
        if (x.pos >= length) return xml_error(&x, "no element");
        if (s[x.pos] != '<') return xml_error(&x, "text before the first element");
        if (!xml_skip_markup(&x)) break;
    }
    tg_status status = xml_element(&x, root, 0);
    if (status != TG_STATUS_OK) xml_free(root);
    return status;
}

static const xml_node *xml_child(const xml_node *node, const char *name)
{
    for (int64_t i = 0; node && i < node->n_children; i++)
        if (strcmp(node->children[i].name, name) == 0) return &node->children[i];
    return NULL;
}

static int xml_number(const xml_node *node, const char *name, double *out)
{
    const xml_node *c = xml_child(node, name);
    if (!c || !c->text || !c->text[0]) return 0;
    char *end;
    *out = strtod(c->text, &end);
    return *end == '\0' && isfinite(*out);
}

/* ---- VOC ---- */

static tg_status read_file_text(const scan_tree *tree, const char *relative, char **text, size_t *length)
{
    char *full = scan_full_path(tree, relative);
    if (!full) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    FILE *f = fopen(full, "rb");
    free(full);
    if (!f) return tg_error(TG_STATUS_IO, "%s: cannot open (%s)", relative, strerror(errno));
    tg_text t = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tg_text_append(&t, chunk, n);
    fclose(f);
    if (t.failed || (!t.data && !(t.data = calloc(1, 1)))) {
        tg_text_free(&t);
        return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory reading %s", relative);
    }
    *text = t.data;
    *length = t.length;
    return TG_STATUS_OK;
}

/* Finds the image of a VOC file: <filename> in the image folders, else the xml's stem. */
static int64_t voc_image(const scan_tree *tree, const int64_t *image_dirs, int n_dirs, const char *filename,
                         const char *xml_name)
{
    char path[4096];
    for (int d = 0; d < n_dirs; d++) {
        const char *dir = tree->entries[image_dirs[d]].path;
        if (filename) {
            snprintf(path, sizeof path, "%s/%s", dir, filename);
            int64_t e = scan_find_file(tree, path);
            if (e >= 0) return e;
        }
        static const char *const exts[] = {"jpg", "jpeg", "png", "JPG", "JPEG", "PNG"};
        const char *dot = strrchr(xml_name, '.');
        int stem = dot ? (int)(dot - xml_name) : (int)strlen(xml_name);
        for (size_t k = 0; k < sizeof exts / sizeof *exts; k++) {
            snprintf(path, sizeof path, "%s/%.*s.%s", dir, stem, xml_name, exts[k]);
            int64_t e = scan_find_file(tree, path);
            if (e >= 0) return e;
        }
    }
    return -1;
}

tg_status scan_try_voc(scan_tree *tree, int *applied)
{
    int64_t annotations = -1, image_dirs[2];
    int n_dirs = 0;
    for (int64_t i = 1; i < tree->n_entries; i++) {
        scan_entry *e = &tree->entries[i];
        if (!e->is_dir || e->parent != 0) continue;
        if (is_name_ci(e->name, "Annotations")) annotations = i;
        if ((is_name_ci(e->name, "JPEGImages") || is_name_ci(e->name, "images")) && n_dirs < 2) image_dirs[n_dirs++] = i;
    }
    if (annotations < 0 || n_dirs == 0) return TG_STATUS_OK;
    int64_t n_xml = 0;
    for (int64_t i = 1; i < tree->n_entries; i++)
        n_xml += tree->entries[i].parent == annotations && scan_has_extension(tree->entries[i].name, "xml");
    if (n_xml == 0) return TG_STATUS_OK;

    /* pass 1: read every file, collect class names; pass 2: samples with boxes */
    xml_node *docs = calloc((size_t)n_xml, sizeof *docs);      /* [n_xml] */
    int64_t *xml_entries = calloc((size_t)n_xml, sizeof *xml_entries); /* [n_xml] */
    char **names = NULL;
    int64_t n_names = 0, names_capacity = 0, k = 0;
    tg_status status = TG_STATUS_OK;
    if (!docs || !xml_entries) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld xml", (long long)n_xml);
    for (int64_t i = 1; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->parent != annotations || !scan_has_extension(e->name, "xml")) continue;
        e->used = 1;
        char *text;
        size_t length;
        if ((status = read_file_text(tree, e->path, &text, &length)) != TG_STATUS_OK) break;
        tg_status parsed = xml_parse(text, length, e->path, &docs[k]);
        free(text);
        if (parsed == TG_STATUS_NOMEM) {
            status = parsed;
            break;
        }
        if (parsed != TG_STATUS_OK || strcmp(docs[k].name, "annotation") != 0) {
            status = scan_note(tree, e->path, "%s; file skipped",
                               parsed != TG_STATUS_OK ? tg_error_message() : "not a VOC <annotation>");
            if (parsed == TG_STATUS_OK) xml_free(&docs[k]);
            memset(&docs[k], 0, sizeof docs[k]);
            continue;
        }
        xml_entries[k] = i;
        for (int64_t c = 0; c < docs[k].n_children && status == TG_STATUS_OK; c++) {
            const xml_node *object = &docs[k].children[c];
            const xml_node *name = xml_child(object, "name");
            if (strcmp(object->name, "object") != 0 || !name || !name->text || !name->text[0]) continue;
            if (n_names == names_capacity) {
                names_capacity = names_capacity ? 2 * names_capacity : 16;
                char **bigger = realloc(names, (size_t)names_capacity * sizeof *bigger);
                if (!bigger) {
                    status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
                    break;
                }
                names = bigger;
            }
            names[n_names++] = name->text;
        }
        k++;
    }
    if (status == TG_STATUS_OK) status = scan_set_classes(tree, names, n_names);
    for (int64_t d = 0; d < k && status == TG_STATUS_OK; d++) {
        const xml_node *doc = &docs[d];
        const char *xml_path = tree->entries[xml_entries[d]].path;
        const xml_node *filename = xml_child(doc, "filename");
        const xml_node *size = xml_child(doc, "size");
        double width = 0, height = 0;
        int64_t image = voc_image(tree, image_dirs, n_dirs, filename ? filename->text : NULL,
                                  tree->entries[xml_entries[d]].name);
        if (image < 0) {
            status = scan_note(tree, xml_path, "its image (%s) is not in %s; file skipped",
                               filename && filename->text ? filename->text : "no <filename>",
                               tree->entries[image_dirs[0]].path);
            continue;
        }
        if (!xml_number(size, "width", &width) || !xml_number(size, "height", &height) || width <= 0 || height <= 0) {
            status = scan_note(tree, xml_path, "no valid <size><width>/<height>; boxes cannot be scaled; file skipped");
            continue;
        }
        tg_sample *s;
        if ((status = scan_add_sample(tree, image, -1, TG_SPLIT_NONE, &s)) != TG_STATUS_OK) break;
        if (!(s->annotation = strdup(xml_path))) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        for (int64_t c = 0; c < doc->n_children && status == TG_STATUS_OK; c++) {
            const xml_node *object = &doc->children[c];
            if (strcmp(object->name, "object") != 0) continue;
            const xml_node *name = xml_child(object, "name"), *box = xml_child(object, "bndbox");
            double v[4];
            if (!name || !name->text || !name->text[0] || !xml_number(box, "xmin", &v[0]) ||
                !xml_number(box, "ymin", &v[1]) || !xml_number(box, "xmax", &v[2]) || !xml_number(box, "ymax", &v[3])) {
                status = scan_note(tree, xml_path, "line %d: an <object> without <name> and <bndbox> "
                                   "xmin/ymin/xmax/ymax; object skipped", object->line);
                continue;
            }
            status = add_box(s, scan_class_index(tree->manifest, name->text), v[0] / width, v[1] / height,
                             v[2] / width, v[3] / height);
        }
    }
    for (int64_t d = 0; docs && d < n_xml; d++) xml_free(&docs[d]);
    free(docs);
    free(xml_entries);
    free(names);
    if (status == TG_STATUS_OK) {
        tree->manifest->task = TG_TASK_DETECTION;
        tree->manifest->layout = TG_LAYOUT_VOC;
        *applied = 1;
    }
    return status;
}

/* ---- COCO ---- */

typedef struct coco_image {
    int64_t id;
    int64_t sample;     /* index into the manifest's samples, or -1 */
    double width, height;
} coco_image;

static int compare_coco_image(const void *a, const void *b)
{
    const coco_image *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static tg_status coco_field(const char *json_path, const tg_json_value *object, const char *where, const char *key,
                            tg_json_kind kind, const tg_json_value **out)
{
    const tg_json_value *v = tg_json_get(object, key);
    if (!v || v->kind != kind || (kind == TG_JSON_KIND_NUMBER && strstr(key, "id") && !v->is_integer))
        return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: \"%s\" must be a%s %s (COCO format); fix the file",
                        json_path, v ? v->line : object->line, v ? v->column : object->column, where, key,
                        strstr(key, "id") ? "n integer" : "", strstr(key, "id") ? "" : tg_json_kind_name(kind));
    *out = v;
    return TG_STATUS_OK;
}

static int64_t coco_find_image(const scan_tree *tree, const char *json_dir, tg_split split, const char *file_name)
{
    static const char *const split_dirs[] = {"train", "val", "test"};
    char path[4096];
    const char *candidates[5] = {json_dir, "images", NULL, "", NULL};
    char split_dir[64];
    if (split != TG_SPLIT_NONE) {
        snprintf(split_dir, sizeof split_dir, "images/%s", split_dirs[split]);
        candidates[2] = split_dir;
        candidates[4] = split_dirs[split];
    }
    for (int c = 0; c < 5; c++) {
        if (!candidates[c]) continue;
        snprintf(path, sizeof path, "%s%s%s", candidates[c], candidates[c][0] ? "/" : "", file_name);
        int64_t e = scan_find_file(tree, path);
        if (e >= 0) return e;
    }
    return -1;
}

static tg_split split_in_name(const char *name)
{
    if (strstr(name, "train")) return TG_SPLIT_TRAIN;
    if (strstr(name, "val")) return TG_SPLIT_VAL;
    if (strstr(name, "test")) return TG_SPLIT_TEST;
    return TG_SPLIT_NONE;
}

static tg_status coco_load(scan_tree *tree, int64_t json_entry, const tg_json_value *doc, coco_image *images,
                           const tg_json_value *categories_value, const char **category_names, int64_t *category_ids)
{
    const scan_entry *je = &tree->entries[json_entry];
    const char *json_path = je->path;
    const char *json_dir = tree->entries[je->parent].path;
    tg_split split = split_in_name(je->name);
    const tg_json_value *list = tg_json_get(doc, "images"), *v;
    for (int64_t i = 0; i < list->count; i++) {
        const tg_json_value *item = &list->items[i];
        char where[64];
        snprintf(where, sizeof where, "images[%lld]", (long long)i);
        TG_TRY(coco_field(json_path, item, where, "id", TG_JSON_KIND_NUMBER, &v));
        images[i].id = v->integer;
        TG_TRY(coco_field(json_path, item, where, "file_name", TG_JSON_KIND_STRING, &v));
        const char *file_name = v->string;
        TG_TRY(coco_field(json_path, item, where, "width", TG_JSON_KIND_NUMBER, &v));
        images[i].width = v->number;
        TG_TRY(coco_field(json_path, item, where, "height", TG_JSON_KIND_NUMBER, &v));
        images[i].height = v->number;
        images[i].sample = -1;
        if (images[i].width <= 0 || images[i].height <= 0)
            return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: width and height must be positive", json_path,
                            item->line, item->column, where);
        int64_t entry = coco_find_image(tree, json_dir, split, file_name);
        if (entry < 0) {
            TG_TRY(scan_note(tree, file_name, "listed in %s (images[%lld]) but not found beside it, in images/ or "
                             "the root; image skipped", json_path, (long long)i));
            continue;
        }
        if (tree->entries[entry].used) continue;
        tg_sample *s;
        TG_TRY(scan_add_sample(tree, entry, -1, split, &s));
        if (!(s->annotation = strdup(json_path))) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        images[i].sample = tree->manifest->n_samples - 1;
    }
    qsort(images, (size_t)list->count, sizeof *images, compare_coco_image);
    for (int64_t i = 0; i < categories_value->count; i++) {
        const tg_json_value *item = &categories_value->items[i];
        char where[64];
        snprintf(where, sizeof where, "categories[%lld]", (long long)i);
        TG_TRY(coco_field(json_path, item, where, "id", TG_JSON_KIND_NUMBER, &v));
        category_ids[i] = v->integer;
        TG_TRY(coco_field(json_path, item, where, "name", TG_JSON_KIND_STRING, &v));
        category_names[i] = v->string;
    }
    return TG_STATUS_OK;
}

static tg_status coco_boxes(scan_tree *tree, const char *json_path, const tg_json_value *doc, const coco_image *images,
                            int64_t n_images, const char **category_names, const int64_t *category_ids,
                            int64_t n_categories)
{
    const tg_json_value *list = tg_json_get(doc, "annotations"), *v;
    for (int64_t i = 0; i < list->count; i++) {
        const tg_json_value *item = &list->items[i];
        char where[64];
        snprintf(where, sizeof where, "annotations[%lld]", (long long)i);
        TG_TRY(coco_field(json_path, item, where, "image_id", TG_JSON_KIND_NUMBER, &v));
        coco_image key = {.id = v->integer};
        const coco_image *image = bsearch(&key, images, (size_t)n_images, sizeof *images, compare_coco_image);
        if (!image)
            return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: image_id %lld is not in \"images\"", json_path, v->line,
                            v->column, where, (long long)key.id);
        TG_TRY(coco_field(json_path, item, where, "category_id", TG_JSON_KIND_NUMBER, &v));
        int64_t category = -1;
        for (int64_t c = 0; c < n_categories; c++) if (category_ids[c] == v->integer) category = c;
        if (category < 0)
            return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: category_id %lld is not in \"categories\"", json_path,
                            v->line, v->column, where, (long long)v->integer);
        TG_TRY(coco_field(json_path, item, where, "bbox", TG_JSON_KIND_ARRAY, &v));
        if (v->count != 4 || v->items[0].kind != TG_JSON_KIND_NUMBER || v->items[1].kind != TG_JSON_KIND_NUMBER ||
            v->items[2].kind != TG_JSON_KIND_NUMBER || v->items[3].kind != TG_JSON_KIND_NUMBER)
            return tg_error(TG_STATUS_DATASET, "%s:%d:%d: %s: bbox must be [x, y, width, height]", json_path, v->line,
                            v->column, where);
        if (image->sample < 0) continue;
        double x = v->items[0].number, y = v->items[1].number, w = v->items[2].number, h = v->items[3].number;
        TG_TRY(add_box(&tree->manifest->samples[image->sample],
                       scan_class_index(tree->manifest, category_names[category]), x / image->width,
                       y / image->height, (x + w) / image->width, (y + h) / image->height));
    }
    return TG_STATUS_OK;
}

static int is_coco(const tg_json_value *doc)
{
    const tg_json_value *a = tg_json_get(doc, "images"), *b = tg_json_get(doc, "annotations"),
                        *c = tg_json_get(doc, "categories");
    return a && b && c && a->kind == TG_JSON_KIND_ARRAY && b->kind == TG_JSON_KIND_ARRAY &&
           c->kind == TG_JSON_KIND_ARRAY;
}

tg_status scan_try_coco(scan_tree *tree, int *applied)
{
    int64_t annotations_dir = -1;
    for (int64_t i = 1; i < tree->n_entries; i++)
        if (tree->entries[i].is_dir && tree->entries[i].parent == 0 && is_name_ci(tree->entries[i].name, "annotations"))
            annotations_dir = i;
    /* pass 1 reads category names of every COCO file (classes), pass 2 adds samples */
    int64_t n_files = 0;
    int64_t files[64];
    tg_json_value docs[64];
    char **names = NULL;
    int64_t n_names = 0;
    tg_status status = TG_STATUS_OK;
    for (int64_t i = 1; i < tree->n_entries && n_files < 64 && status == TG_STATUS_OK; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->is_dir || (e->parent != 0 && e->parent != annotations_dir) || !scan_has_extension(e->name, "json"))
            continue;
        char *full = scan_full_path(tree, e->path);
        if (!full) {
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
            break;
        }
        status = tg_json_parse_file(full, &docs[n_files]);
        free(full);
        if (status == TG_STATUS_DATASET) {
            /* NOTE: a JSON that does not parse cannot be told from COCO; it is reported, not fatal */
            char message[1024];
            snprintf(message, sizeof message, "%s", tg_error_message());
            status = scan_note(tree, e->path, "not valid JSON, so not read as COCO: %s", message);
            continue;
        }
        if (status != TG_STATUS_OK) break;
        if (!is_coco(&docs[n_files])) {
            tg_json_free(&docs[n_files]);
            continue;
        }
        e->used = 1;
        files[n_files++] = i;
    }
    for (int64_t f = 0; f < n_files && status == TG_STATUS_OK; f++) {
        const tg_json_value *categories = tg_json_get(&docs[f], "categories");
        char **bigger = realloc(names, (size_t)(n_names + categories->count + 1) * sizeof *bigger);
        if (!bigger) {
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
            break;
        }
        names = bigger;
        for (int64_t c = 0; c < categories->count && status == TG_STATUS_OK; c++) {
            const tg_json_value *name = tg_json_get(&categories->items[c], "name");
            if (!name || name->kind != TG_JSON_KIND_STRING)
                status = tg_error(TG_STATUS_DATASET, "%s:%d:%d: categories[%lld]: \"name\" must be a string",
                                  tree->entries[files[f]].path, categories->items[c].line,
                                  categories->items[c].column, (long long)c);
            else names[n_names++] = name->string;
        }
    }
    if (status == TG_STATUS_OK && n_files > 0) status = scan_set_classes(tree, names, n_names);
    for (int64_t f = 0; f < n_files && status == TG_STATUS_OK; f++) {
        const tg_json_value *images_value = tg_json_get(&docs[f], "images");
        const tg_json_value *categories = tg_json_get(&docs[f], "categories");
        coco_image *images = calloc((size_t)images_value->count + 1, sizeof *images);
        const char **category_names = calloc((size_t)categories->count + 1, sizeof *category_names);
        int64_t *category_ids = calloc((size_t)categories->count + 1, sizeof *category_ids);
        if (!images || !category_names || !category_ids) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        if (status == TG_STATUS_OK)
            status = coco_load(tree, files[f], &docs[f], images, categories, category_names, category_ids);
        if (status == TG_STATUS_OK)
            status = coco_boxes(tree, tree->entries[files[f]].path, &docs[f], images, images_value->count,
                                category_names, category_ids, categories->count);
        free(images);
        free(category_names);
        free(category_ids);
        if (status == TG_STATUS_DATASET) {
            /* the messages start with the json's path relative to the root: make it absolute */
            char message[1024];
            snprintf(message, sizeof message, "%s", tg_error_message());
            status = tg_error(TG_STATUS_DATASET, "%s/%s", tree->root, message);
        }
    }
    for (int64_t f = 0; f < n_files; f++) tg_json_free(&docs[f]);
    free(names);
    if (status == TG_STATUS_OK && n_files > 0) {
        tree->manifest->task = TG_TASK_DETECTION;
        tree->manifest->layout = TG_LAYOUT_COCO;
        *applied = 1;
    }
    return status;
}
