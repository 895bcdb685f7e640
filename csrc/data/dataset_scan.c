/* dataset_scan.c: from a folder to a manifest, recognising the layout without being told.
 *
 * The folder is walked once (entries sorted by the bytes of their names). Skipped and
 * reported as notes, never indexed: hidden and system entries (names starting with
 * '.', __MACOSX, Thumbs.db, desktop.ini), names that are not valid UTF-8, symbolic
 * links to folders, files that are not images, images in a format trugrade does not
 * decode (.bmp .tif .tiff .gif .webp), and images the layout does not place.
 * Images are recognised by extension (any case): .png .jpg .jpeg .dcm .dicom .npy
 * (the decoder checks the content later).
 *
 * Layouts are tried in this order; the first that fits is used:
 *  1. segmentation: a folder images/ with a sibling masks/ (at the root or under
 *     split folders); a mask matches an image by stem ("a.png" or "a_mask.png" for
 *     "a.jpg"). Masks hold class indices per pixel, so `classes` stays empty.
 *  2. YOLO: a .yaml/.yml at the root with `names`, and a labels/ folder
 *     (dataset_detection.c).
 *  3. Pascal VOC: an Annotations/ folder of .xml at the root (dataset_detection.c).
 *  4. COCO: a .json with images, annotations and categories at the root or in
 *     annotations/ (dataset_detection.c).
 *  5. CSV: a .csv at the root with two columns, file,label (RFC 4180 quoting; the
 *     first row is a header when its first field does not name an existing file;
 *     paths are relative to the CSV; a CSV named like a split, e.g. test.csv,
 *     gives its rows that split).
 *  6. class folders, at any depth: every folder that holds images directly is a
 *     class folder, named by its folder name; its parent is its collection. A
 *     parent named like a split (train/, val/, validation/, valid/, test/, testing/)
 *     gives the split and the collection is the folder above it. With one
 *     collection (ImageFolder, or split folders of class folders), classes are the
 *     folder names. With several collections (Dataset/ARM/FracAtlas/images/Fractured,
 *     Dataset/KNEE/Osteoarthritis Knee X-ray/Normal): when every collection has the
 *     same class names they are MERGED (the same classes from several sources);
 *     otherwise each class is PREFIXED with its collection's path, less a last
 *     component named "images" ("ARM/FracAtlas/Fractured", "KNEE/Osteoarthritis
 *     Knee X-ray/Normal"), because "Normal" of a knee is not "Normal" of an arm.
 *     Folders beside class folders with no image below them are reported as empty
 *     class folders. At least two classes are needed.
 * Samples found under split folders keep that split; the others are assigned by
 * tg_dataset_assign_splits. Every sample's bytes are hashed (XXH64) and its header
 * probed for width/height/channels (dataset_probe.c: a sample whose header cannot be
 * read becomes a note), in parallel, before splits are assigned. Scanning does not
 * decode pixels and does not follow symbolic links to folders. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/threads.h"
#include "hash.h"
#include "scan_tree.h"

#define SCAN_MAX_DEPTH 64

static const char *const image_extensions[] = {"png", "jpg", "jpeg", "dcm", "dicom", "npy"};
static const char *const foreign_image_extensions[] = {"bmp", "tif", "tiff", "gif", "webp"};

/* ---- small helpers shared with dataset_detection.c ---- */

int scan_has_extension(const char *name, const char *ext)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name && strcasecmp(dot + 1, ext) == 0;
}

int scan_is_image_name(const char *name)
{
    for (size_t i = 0; i < sizeof image_extensions / sizeof *image_extensions; i++)
        if (scan_has_extension(name, image_extensions[i])) return 1;
    return 0;
}

tg_split scan_split_from_name(const char *name)
{
    static const char *const train[] = {"train", "training"};
    static const char *const val[] = {"val", "valid", "validation", "dev"};
    static const char *const test[] = {"test", "testing"};
    for (size_t i = 0; i < 2; i++) if (strcasecmp(name, train[i]) == 0) return TG_SPLIT_TRAIN;
    for (size_t i = 0; i < 4; i++) if (strcasecmp(name, val[i]) == 0) return TG_SPLIT_VAL;
    for (size_t i = 0; i < 2; i++) if (strcasecmp(name, test[i]) == 0) return TG_SPLIT_TEST;
    return TG_SPLIT_NONE;
}

tg_status scan_note(scan_tree *tree, const char *path, const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return tg_manifest_add_note(tree->manifest, path, reason);
}

char *scan_full_path(const scan_tree *tree, const char *relative)
{
    size_t a = strlen(tree->root), b = strlen(relative);
    char *full = malloc(a + b + 2);
    if (!full) return NULL;
    memcpy(full, tree->root, a);
    full[a] = '/';
    memcpy(full + a + 1, relative, b + 1);
    if (b == 0) full[a] = '\0';
    return full;
}

static int compare_file_path(const void *a, const void *b, void *tree)
{
    const scan_tree *t = tree;
    return strcmp(t->entries[*(const int64_t *)a].path, t->entries[*(const int64_t *)b].path);
}

int64_t scan_find_file(const scan_tree *tree, const char *path)
{
    int64_t low = 0, high = tree->n_files;
    while (low < high) {
        int64_t mid = low + (high - low) / 2;
        int c = strcmp(tree->entries[tree->files_by_path[mid]].path, path);
        if (c == 0) return tree->files_by_path[mid];
        if (c < 0) low = mid + 1;
        else high = mid;
    }
    return -1;
}

tg_status scan_add_sample(scan_tree *tree, int64_t entry, int32_t label, tg_split split, tg_sample **out)
{
    tg_manifest *m = tree->manifest;
    if (m->n_samples == tree->samples_capacity) {
        int64_t capacity = tree->samples_capacity ? tree->samples_capacity * 2 : 64;
        tg_sample *bigger = realloc(m->samples, (size_t)capacity * sizeof *bigger);
        if (!bigger) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld samples", (long long)capacity);
        m->samples = bigger;
        tree->samples_capacity = capacity;
    }
    tg_sample *s = &m->samples[m->n_samples];
    memset(s, 0, sizeof *s);
    s->path = strdup(tree->entries[entry].path);
    if (!s->path) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a path");
    m->n_samples++;
    s->label = label;
    s->split = split;
    tree->entries[entry].used = 1;
    if (out) *out = s;
    return TG_STATUS_OK;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

tg_status scan_set_classes(scan_tree *tree, char **names, int64_t count)
{
    if (count > 0) qsort(names, (size_t)count, sizeof *names, compare_strings);
    tg_manifest *m = tree->manifest;
    m->classes = calloc((size_t)count + 1, sizeof *m->classes);
    if (!m->classes) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld classes", (long long)count);
    for (int64_t i = 0; i < count; i++) {
        if (m->n_classes > 0 && strcmp(m->classes[m->n_classes - 1], names[i]) == 0) continue;
        m->classes[m->n_classes] = strdup(names[i]);
        if (!m->classes[m->n_classes]) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for class names");
        m->n_classes++;
    }
    return TG_STATUS_OK;
}

int32_t scan_class_index(const tg_manifest *m, const char *name)
{
    int32_t low = 0, high = m->n_classes;
    while (low < high) {
        int32_t mid = low + (high - low) / 2;
        int c = strcmp(m->classes[mid], name);
        if (c == 0) return mid;
        if (c < 0) low = mid + 1;
        else high = mid;
    }
    return -1;
}

/* ---- the walk ---- */

static int is_hidden_name(const char *name)
{
    return name[0] == '.' || strcmp(name, "__MACOSX") == 0 || strcasecmp(name, "Thumbs.db") == 0 ||
           strcasecmp(name, "desktop.ini") == 0;
}

static tg_status add_entry(scan_tree *tree, const char *path, int64_t parent, int is_dir, int64_t *index)
{
    if (tree->n_entries == tree->capacity) {
        int64_t capacity = tree->capacity ? tree->capacity * 2 : 256;
        scan_entry *bigger = realloc(tree->entries, (size_t)capacity * sizeof *bigger);
        if (!bigger) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld entries", (long long)capacity);
        tree->entries = bigger;
        tree->capacity = capacity;
    }
    scan_entry *e = &tree->entries[tree->n_entries];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    if (!e->path) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a path");
    const char *slash = strrchr(e->path, '/');
    e->name = slash ? slash + 1 : e->path;
    e->parent = parent;
    e->is_dir = is_dir;
    *index = tree->n_entries++;
    return TG_STATUS_OK;
}

/* One name of a folder listing and its type from readdir (DT_UNKNOWN when the file
 * system does not say). The name comes first: compare_strings sorts these. */
typedef struct listed_name {
    char *name;
    unsigned char type;
} listed_name;

static tg_status walk(scan_tree *tree, int64_t dir, int depth)
{
    char *full = scan_full_path(tree, tree->entries[dir].path);
    if (!full) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a path");
    DIR *handle = opendir(full);
    if (!handle) {
        tg_status s = scan_note(tree, tree->entries[dir].path, "folder cannot be read (%s)", strerror(errno));
        free(full);
        return s;
    }
    listed_name *names = NULL;
    size_t n_names = 0, capacity = 0;
    tg_status status = TG_STATUS_OK;
    struct dirent *d;
    while ((d = readdir(handle)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        if (n_names == capacity) {
            capacity = capacity ? capacity * 2 : 32;
            listed_name *bigger = realloc(names, capacity * sizeof *bigger);
            if (!bigger) {
                status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory listing %s", full);
                break;
            }
            names = bigger;
        }
        if (!(names[n_names].name = strdup(d->d_name))) {
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory listing %s", full);
            break;
        }
        names[n_names].type = d->d_type;
        n_names++;
    }
    closedir(handle);
    if (status == TG_STATUS_OK && n_names > 0) qsort(names, n_names, sizeof *names, compare_strings);
    for (size_t i = 0; status == TG_STATUS_OK && i < n_names; i++) {
        const char *name = names[i].name;
        const char *base = tree->entries[dir].path;
        size_t len = strlen(base) + strlen(name) + 2;
        char *relative = malloc(len);
        char *child_full = relative ? malloc(strlen(full) + strlen(name) + 2) : NULL;
        if (!relative || !child_full) {
            free(relative);
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a path");
            break;
        }
        snprintf(relative, len, "%s%s%s", base, base[0] ? "/" : "", name);
        sprintf(child_full, "%s/%s", full, name);
        struct stat st, target;
        /* NOTE: readdir's type spares two path lookups (lstat, stat) per file, the serial
         * part of a scan of many small files; links and unknown types are stat'ed. */
        int is_link = 0, stat_ok = 1;
        if (names[i].type == DT_REG || names[i].type == DT_DIR) {
            memset(&target, 0, sizeof target);
            target.st_mode = names[i].type == DT_REG ? S_IFREG : S_IFDIR;
        } else {
            is_link = lstat(child_full, &st) == 0 && S_ISLNK(st.st_mode);
            stat_ok = stat(child_full, &target) == 0;
        }
        int64_t index;
        if (!tg_utf8_valid(name, strlen(name))) {
            char printable[300];
            size_t k = 0;
            for (const unsigned char *c = (const unsigned char *)relative; *c && k + 1 < sizeof printable; c++)
                printable[k++] = (*c < 0x80 && *c >= 0x20) ? (char)*c : '?';
            printable[k] = '\0';
            status = scan_note(tree, printable, "the name is not valid UTF-8; rename it to index it");
        } else if (is_hidden_name(name)) {
            status = scan_note(tree, relative, stat_ok && S_ISDIR(target.st_mode) ? "hidden or system folder; not scanned"
                                                                                  : "hidden or system file");
        } else if (!stat_ok) {
            status = scan_note(tree, relative, "cannot be read (%s)", strerror(errno));
        } else if (S_ISDIR(target.st_mode)) {
            if (is_link) status = scan_note(tree, relative, "symbolic link to a folder; not followed");
            else if (depth >= SCAN_MAX_DEPTH) status = scan_note(tree, relative, "deeper than %d folders; not scanned", SCAN_MAX_DEPTH);
            else if ((status = add_entry(tree, relative, dir, 1, &index)) == TG_STATUS_OK)
                status = walk(tree, index, depth + 1);
        } else if (S_ISREG(target.st_mode)) {
            int foreign = 0;
            for (size_t k = 0; k < sizeof foreign_image_extensions / sizeof *foreign_image_extensions; k++)
                foreign |= scan_has_extension(name, foreign_image_extensions[k]);
            if (foreign) {
                status = scan_note(tree, relative, "image format %s is not decoded by trugrade; convert it to PNG",
                                   strrchr(name, '.'));
            } else if ((status = add_entry(tree, relative, dir, 0, &index)) == TG_STATUS_OK) {
                tree->entries[index].is_image = scan_is_image_name(name);
            }
        }
        free(relative);
        free(child_full);
    }
    for (size_t i = 0; i < n_names; i++) free(names[i].name);
    free(names);
    free(full);
    return status;
}

/* Counts images per folder and builds the path index of files. */
static tg_status index_tree(scan_tree *tree)
{
    tree->files_by_path = malloc((size_t)(tree->n_entries + 1) * sizeof *tree->files_by_path);
    if (!tree->files_by_path) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for the file index");
    for (int64_t i = 0; i < tree->n_entries; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->is_dir) continue;
        tree->files_by_path[tree->n_files++] = i;
        if (!e->is_image) continue;
        tree->entries[e->parent].images_here++;
        for (int64_t p = e->parent; p >= 0; p = tree->entries[p].parent) tree->entries[p].images_below++;
    }
    qsort_r(tree->files_by_path, (size_t)tree->n_files, sizeof *tree->files_by_path, compare_file_path, tree);
    return TG_STATUS_OK;
}

/* ---- layout: segmentation (images/ + masks/) ---- */

typedef struct stem_entry {
    char *stem;
    int64_t entry;
} stem_entry;

static int compare_stem(const void *a, const void *b)
{
    const stem_entry *x = a, *y = b;
    int c = strcmp(x->stem, y->stem);
    return c ? c : (x->entry > y->entry) - (x->entry < y->entry);
}

static char *stem_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    size_t n = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    return strndup(name, n);
}

static const stem_entry *find_stem(const stem_entry *stems, int64_t n, const char *stem)
{
    int64_t low = 0, high = n;
    while (low < high) {
        int64_t mid = low + (high - low) / 2;
        if (strcmp(stems[mid].stem, stem) < 0) low = mid + 1;
        else high = mid;
    }
    return low < n && strcmp(stems[low].stem, stem) == 0 ? &stems[low] : NULL;
}

static tg_status pair_images_and_masks(scan_tree *tree, int64_t images_dir, int64_t masks_dir, tg_split split)
{
    int64_t n_masks = 0;
    for (int64_t i = 0; i < tree->n_entries; i++)
        if (tree->entries[i].parent == masks_dir && tree->entries[i].is_image) n_masks++;
    stem_entry *stems = calloc((size_t)n_masks + 1, sizeof *stems); /* [n_masks] sorted by stem */
    if (!stems) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld masks", (long long)n_masks);
    tg_status status = TG_STATUS_OK;
    int64_t k = 0;
    for (int64_t i = 0; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        if (tree->entries[i].parent != masks_dir || !tree->entries[i].is_image) continue;
        stems[k].entry = i;
        if (!(stems[k++].stem = stem_of(tree->entries[i].name)))
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for names");
    }
    if (status == TG_STATUS_OK) qsort(stems, (size_t)n_masks, sizeof *stems, compare_stem);
    for (int64_t i = 0; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->parent != images_dir || !e->is_image) continue;
        char *stem = stem_of(e->name);
        char *suffixed = stem ? malloc(strlen(stem) + 6) : NULL;
        if (!suffixed) {
            free(stem);
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for names");
            break;
        }
        sprintf(suffixed, "%s_mask", stem);
        const stem_entry *match = find_stem(stems, n_masks, stem);
        if (!match) match = find_stem(stems, n_masks, suffixed);
        if (!match) {
            status = scan_note(tree, e->path, "no mask named \"%s.*\" or \"%s.*\" in %s; image skipped", stem, suffixed,
                               tree->entries[masks_dir].path);
        } else {
            tg_sample *s;
            status = scan_add_sample(tree, i, -1, split, &s);
            if (status == TG_STATUS_OK && !(s->mask = strdup(tree->entries[match->entry].path)))
                status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for a path");
            tree->entries[match->entry].used = 1;
        }
        free(stem);
        free(suffixed);
    }
    for (int64_t i = 0; i < n_masks && status == TG_STATUS_OK; i++)
        if (!tree->entries[stems[i].entry].used)
            status = scan_note(tree, tree->entries[stems[i].entry].path, "mask without a matching image in %s",
                               tree->entries[images_dir].path);
    for (int64_t i = 0; i < n_masks; i++) free(stems[i].stem);
    free(stems);
    return status;
}

static int is_images_name(const char *name) { return strcasecmp(name, "images") == 0 || strcasecmp(name, "imgs") == 0; }
static int is_masks_name(const char *name) { return strcasecmp(name, "masks") == 0 || strcasecmp(name, "mask") == 0; }

static tg_status try_segmentation(scan_tree *tree, int *applied)
{
    for (int64_t i = 1; i < tree->n_entries; i++) {
        scan_entry *images = &tree->entries[i];
        if (!images->is_dir || !is_images_name(images->name) || images->images_here == 0) continue;
        int64_t parent = images->parent;
        if (parent != 0 && !(tree->entries[parent].parent == 0 &&
                             scan_split_from_name(tree->entries[parent].name) != TG_SPLIT_NONE))
            continue;
        for (int64_t j = 1; j < tree->n_entries; j++) {
            scan_entry *masks = &tree->entries[j];
            if (!masks->is_dir || masks->parent != parent || !is_masks_name(masks->name)) continue;
            tg_split split = parent == 0 ? TG_SPLIT_NONE : scan_split_from_name(tree->entries[parent].name);
            TG_TRY(pair_images_and_masks(tree, i, j, split));
            tree->manifest->task = TG_TASK_SEGMENTATION;
            tree->manifest->layout = TG_LAYOUT_SEGMENTATION;
            *applied = 1;
        }
    }
    return TG_STATUS_OK;
}

/* ---- layout: CSV of file,label ---- */

typedef struct csv_row {
    char *fields[2];
    int n_fields;          /* as found in the row (may be more than 2) */
    int line;              /* where the row starts */
} csv_row;

/* Reads one RFC 4180 record at *pos; returns 0 at the end of the text. */
static int csv_next_row(const char *text, size_t length, size_t *pos, int *line, csv_row *row, int *bad_quote)
{
    memset(row, 0, sizeof *row);
    if (*pos >= length) return 0;
    row->line = *line;
    char field[4096];
    size_t n = 0;
    int quoted = 0, in_quotes = 0;
    for (;;) {
        int at_end = *pos >= length;
        char c = at_end ? '\n' : text[*pos];
        if (in_quotes) {
            if (at_end) {
                *bad_quote = 1;
                in_quotes = 0;
                continue;
            }
            (*pos)++;
            if (c == '"') {
                if (*pos < length && text[*pos] == '"') {
                    (*pos)++;
                    if (n + 1 < sizeof field) field[n++] = '"';
                } else {
                    in_quotes = 0;
                }
            } else {
                if (c == '\n') (*line)++;
                if (n + 1 < sizeof field) field[n++] = c;
            }
            continue;
        }
        if (!at_end) (*pos)++;
        if (c == '"' && n == 0 && !quoted) {
            quoted = in_quotes = 1;
            continue;
        }
        if (c == ',' || c == '\n') {
            while (!quoted && n > 0 && (field[n - 1] == '\r' || field[n - 1] == ' ')) n--;
            field[n] = '\0';
            size_t start = 0;
            while (!quoted && field[start] == ' ') start++;
            if (row->n_fields < 2) row->fields[row->n_fields] = strdup(field + start);
            row->n_fields++;
            n = 0;
            quoted = 0;
            if (c == '\n') {
                (*line)++;
                return 1;
            }
            continue;
        }
        if (quoted && (c == '\r' || c == ' ')) continue; /* after a closing quote */
        if (n + 1 < sizeof field) field[n++] = c;
    }
}

static void csv_row_free(csv_row *row)
{
    free(row->fields[0]);
    free(row->fields[1]);
}

static int csv_row_blank(const csv_row *row)
{
    return row->n_fields == 1 && row->fields[0] && row->fields[0][0] == '\0';
}

/* Normalises a listed path: '\' to '/', no leading "./"; NULL when it leaves the root. */
static char *csv_normal_path(const char *listed)
{
    char *p = strdup(listed);
    if (!p) return NULL;
    for (char *c = p; *c; c++) if (*c == '\\') *c = '/';
    char *start = p;
    while (start[0] == '.' && start[1] == '/') start += 2;
    if (start[0] == '/' || strcmp(start, "..") == 0 || strncmp(start, "../", 3) == 0 || strstr(start, "/../")) {
        free(p);
        return NULL;
    }
    memmove(p, start, strlen(start) + 1);
    return p;
}

static tg_status read_text_file(const char *path, char **out, size_t *length)
{
    FILE *f = fopen(path, "rb");
    if (!f) return tg_error(TG_STATUS_IO, "%s: cannot open (%s)", path, strerror(errno));
    tg_text text = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tg_text_append(&text, chunk, n);
    fclose(f);
    if (text.failed) {
        tg_text_free(&text);
        return tg_error(TG_STATUS_NOMEM, "%s: no memory to read it", path);
    }
    *out = text.data ? text.data : strdup("");
    *length = text.length;
    return *out ? TG_STATUS_OK : tg_error(TG_STATUS_NOMEM, "%s: no memory", path);
}

/* Two columns in every non-blank row. */
static int csv_has_two_columns(const char *text, size_t length)
{
    size_t pos = 0;
    int line = 1, bad = 0, rows = 0, ok = 1;
    csv_row row;
    while (ok && csv_next_row(text, length, &pos, &line, &row, &bad)) {
        if (!csv_row_blank(&row)) {
            ok = row.n_fields == 2;
            rows++;
        }
        csv_row_free(&row);
    }
    return ok && rows > 0;
}

static tg_status read_csv_samples(scan_tree *tree, int64_t csv_entry, const char *text, size_t length,
                                  char ***labels, int64_t *n_labels, int64_t *labels_capacity)
{
    const char *csv_path = tree->entries[csv_entry].path;
    tg_split split = TG_SPLIT_NONE;
    char *stem = stem_of(tree->entries[csv_entry].name);
    if (!stem) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    split = scan_split_from_name(stem);
    free(stem);
    size_t pos = 0;
    int line = 1, bad_quote = 0, first = 1;
    tg_status status = TG_STATUS_OK;
    csv_row row;
    while (status == TG_STATUS_OK && csv_next_row(text, length, &pos, &line, &row, &bad_quote)) {
        int is_first = first;
        first = 0;
        if (csv_row_blank(&row)) {
            csv_row_free(&row);
            continue;
        }
        char *path = row.fields[0] ? csv_normal_path(row.fields[0]) : NULL;
        char where[64];
        snprintf(where, sizeof where, "%s line %d", csv_path, row.line);
        int64_t entry = path ? scan_find_file(tree, path) : -1;
        if (is_first && entry < 0 && path && !scan_is_image_name(path)) {
            /* a header row */
        } else if (!row.fields[0] || !row.fields[1]) {
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory reading %s", csv_path);
        } else if (!path) {
            status = scan_note(tree, row.fields[0], "%s: the path leaves the dataset folder; row skipped", where);
        } else if (row.fields[1][0] == '\0') {
            status = scan_note(tree, path, "%s: empty label; row skipped", where);
        } else if (entry < 0) {
            status = scan_note(tree, path, "%s: listed but missing (or hidden); row skipped", where);
        } else if (!tree->entries[entry].is_image) {
            status = scan_note(tree, path, "%s: not an image file; row skipped", where);
        } else if (tree->entries[entry].used) {
            status = scan_note(tree, path, "%s: listed again; the first row is kept", where);
        } else {
            tg_sample *s;
            status = scan_add_sample(tree, entry, -1, split, &s);
            if (status == TG_STATUS_OK && *n_labels == *labels_capacity) {
                int64_t capacity = *labels_capacity ? *labels_capacity * 2 : 64;
                char **bigger = realloc(*labels, (size_t)capacity * sizeof *bigger);
                if (!bigger) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for labels");
                else {
                    *labels = bigger;
                    *labels_capacity = capacity;
                }
            }
            if (status == TG_STATUS_OK) {
                (*labels)[(*n_labels)++] = row.fields[1];
                row.fields[1] = NULL;
            }
        }
        free(path);
        csv_row_free(&row);
    }
    if (status == TG_STATUS_OK && bad_quote)
        status = scan_note(tree, csv_path, "a quoted field is not closed; rows after it may be wrong");
    return status;
}

static tg_status try_csv(scan_tree *tree, int *applied)
{
    char **labels = NULL; /* [n_labels] label text of each new sample, in sample order */
    int64_t n_labels = 0, labels_capacity = 0;
    tg_status status = TG_STATUS_OK;
    for (int64_t i = 1; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        scan_entry *e = &tree->entries[i];
        if (e->is_dir || e->parent != 0 || !scan_has_extension(e->name, "csv")) continue;
        char *full = scan_full_path(tree, e->path), *text = NULL;
        size_t length = 0;
        if (!full) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        status = read_text_file(full, &text, &length);
        free(full);
        if (status != TG_STATUS_OK) break;
        if (csv_has_two_columns(text, length)) {
            e->used = 1;
            status = read_csv_samples(tree, i, text, length, &labels, &n_labels, &labels_capacity);
        } else {
            status = scan_note(tree, e->path, "a CSV but not of two columns (file,label); not used");
        }
        free(text);
    }
    if (status == TG_STATUS_OK && n_labels > 0) {
        char **names = malloc((size_t)n_labels * sizeof *names);
        if (!names) status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for labels");
        else {
            memcpy(names, labels, (size_t)n_labels * sizeof *names);
            status = scan_set_classes(tree, names, n_labels);
            free(names);
        }
        for (int64_t k = 0; status == TG_STATUS_OK && k < n_labels; k++)
            tree->manifest->samples[k].label = scan_class_index(tree->manifest, labels[k]);
        tree->manifest->task = TG_TASK_CLASSIFICATION;
        tree->manifest->layout = TG_LAYOUT_CSV;
        *applied = 1;
    }
    for (int64_t k = 0; k < n_labels; k++) free(labels[k]);
    free(labels);
    return status;
}

/* ---- layout: class folders, split folders, collections ---- */

typedef struct class_folder {
    int64_t dir;            /* entry of the class folder */
    int64_t collection;     /* entry of its collection folder */
    tg_split split;
    char *class_name;       /* final name (after merge or prefix) */
} class_folder;

static int64_t collection_of(const scan_tree *tree, int64_t dir, tg_split *split)
{
    int64_t parent = tree->entries[dir].parent;
    *split = TG_SPLIT_NONE;
    if (parent > 0) {
        tg_split s = scan_split_from_name(tree->entries[parent].name);
        if (s != TG_SPLIT_NONE) {
            *split = s;
            return tree->entries[parent].parent;
        }
    }
    return parent;
}

/* The names of the class folders of one collection, sorted, joined by '/' (to compare sets). */
static char *class_set_key(const scan_tree *tree, const class_folder *folders, int64_t n, int64_t collection)
{
    const char **names = malloc((size_t)(n + 1) * sizeof *names);
    if (!names) return NULL;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (folders[i].collection == collection) names[k++] = tree->entries[folders[i].dir].name;
    qsort(names, (size_t)k, sizeof *names, compare_strings);
    tg_text key = {0};
    for (int64_t i = 0; i < k; i++) {
        if (i && strcmp(names[i], names[i - 1]) == 0) continue;
        tg_text_append(&key, names[i], strlen(names[i]) + 1);
    }
    tg_text_append(&key, "", 0);
    free(names);
    if (key.failed) {
        tg_text_free(&key);
        return NULL;
    }
    return key.data ? key.data : strdup("");
}

static tg_status try_class_folders(scan_tree *tree, int *applied)
{
    int64_t n = 0;
    for (int64_t i = 1; i < tree->n_entries; i++) {
        const scan_entry *e = &tree->entries[i];
        if (e->is_dir && e->images_here > 0 && scan_split_from_name(e->name) == TG_SPLIT_NONE) n++;
    }
    if (n == 0) return TG_STATUS_OK;
    class_folder *folders = calloc((size_t)n, sizeof *folders); /* [n] */
    int64_t *collections = calloc((size_t)n, sizeof *collections); /* [n_collections] distinct */
    char **names = calloc((size_t)n, sizeof *names);             /* [n] for scan_set_classes */
    tg_status status = TG_STATUS_OK;
    if (!folders || !collections || !names) {
        status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld class folders", (long long)n);
        goto done;
    }
    int64_t k = 0, n_collections = 0;
    for (int64_t i = 1; i < tree->n_entries; i++) {
        const scan_entry *e = &tree->entries[i];
        if (!e->is_dir || e->images_here == 0 || scan_split_from_name(e->name) != TG_SPLIT_NONE) continue;
        folders[k].dir = i;
        folders[k].collection = collection_of(tree, i, &folders[k].split);
        int seen = 0;
        for (int64_t c = 0; c < n_collections; c++) seen |= collections[c] == folders[k].collection;
        if (!seen) collections[n_collections++] = folders[k].collection;
        k++;
    }
    /* merge when every collection has the same class names, else prefix */
    int merge = 1;
    char *first_key = class_set_key(tree, folders, n, collections[0]);
    if (!first_key) {
        status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
        goto done;
    }
    for (int64_t c = 1; c < n_collections && merge; c++) {
        char *key = class_set_key(tree, folders, n, collections[c]);
        if (!key) {
            free(first_key);
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
            goto done;
        }
        merge = strcmp(key, first_key) == 0;
        free(key);
    }
    free(first_key);
    for (int64_t i = 0; i < n; i++) {
        const char *class_dir_name = tree->entries[folders[i].dir].name;
        if (merge) {
            folders[i].class_name = strdup(class_dir_name);
        } else {
            const scan_entry *c = &tree->entries[folders[i].collection];
            const char *prefix = c->path;
            size_t prefix_length = strlen(prefix);
            if (folders[i].collection > 0 && is_images_name(c->name))
                prefix_length = tree->entries[c->parent].path[0] ? strlen(tree->entries[c->parent].path) : 0;
            size_t len = prefix_length + strlen(class_dir_name) + 2;
            folders[i].class_name = malloc(len);
            if (folders[i].class_name)
                snprintf(folders[i].class_name, len, "%.*s%s%s", (int)prefix_length, prefix, prefix_length ? "/" : "",
                         class_dir_name);
        }
        if (!folders[i].class_name) {
            status = tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for class names");
            goto done;
        }
        names[i] = folders[i].class_name;
    }
    if ((status = scan_set_classes(tree, names, n)) != TG_STATUS_OK) goto done;
    if (tree->manifest->n_classes < 2) {
        tg_manifest *m = tree->manifest;
        for (int32_t c = 0; c < m->n_classes; c++) free(m->classes[c]);
        free(m->classes);
        m->classes = NULL;
        m->n_classes = 0;
        goto done;
    }
    for (int64_t i = 0; i < n && status == TG_STATUS_OK; i++) {
        int32_t label = scan_class_index(tree->manifest, folders[i].class_name);
        for (int64_t f = 0; f < tree->n_entries && status == TG_STATUS_OK; f++)
            if (tree->entries[f].parent == folders[i].dir && tree->entries[f].is_image)
                status = scan_add_sample(tree, f, label, folders[i].split, NULL);
    }
    /* empty class folders: folders beside class folders with no image anywhere below */
    for (int64_t i = 1; i < tree->n_entries && status == TG_STATUS_OK; i++) {
        const scan_entry *e = &tree->entries[i];
        if (!e->is_dir || e->images_below > 0 || scan_split_from_name(e->name) != TG_SPLIT_NONE) continue;
        int beside = 0;
        for (int64_t f = 0; f < n && !beside; f++) beside = tree->entries[folders[f].dir].parent == e->parent;
        if (beside) status = scan_note(tree, e->path, "empty class folder (no images); not a class");
    }
    tree->manifest->task = TG_TASK_CLASSIFICATION;
    tree->manifest->layout = n_collections > 1 ? TG_LAYOUT_COLLECTIONS : TG_LAYOUT_CLASS_FOLDERS;
    *applied = 1;
done:
    for (int64_t i = 0; folders && i < n; i++) free(folders[i].class_name);
    free(folders);
    free(collections);
    free(names);
    return status;
}

/* ---- hashing, leftovers, the entry point ---- */

typedef struct hash_job {
    scan_tree *tree;
    int *failed;            /* [n_samples] */
    int *no_memory;
} hash_job;

static void hash_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    hash_job *job = ctx;
    for (int64_t i = begin; i < end; i++) {
        tg_sample *s = &job->tree->manifest->samples[i];
        char *full = scan_full_path(job->tree, s->path);
        if (!full) {
            *job->no_memory = 1;
            continue;
        }
        job->failed[i] = tg_hash_file(full, &s->content_hash, &s->size_bytes) != TG_STATUS_OK;
        free(full);
    }
}

static tg_status hash_samples(scan_tree *tree)
{
    tg_manifest *m = tree->manifest;
    int *failed = calloc((size_t)m->n_samples + 1, sizeof *failed);
    int no_memory = 0;
    if (!failed) return tg_error(TG_STATUS_NOMEM, "dataset scan: no memory for %lld samples", (long long)m->n_samples);
    hash_job job = {tree, failed, &no_memory};
    tg_parallel_for(m->n_samples, 16, hash_range, &job);
    tg_status status = no_memory ? tg_error(TG_STATUS_NOMEM, "dataset scan: no memory while hashing") : TG_STATUS_OK;
    int64_t kept = 0;
    for (int64_t i = 0; i < m->n_samples; i++) {
        tg_sample *s = &m->samples[i];
        if (failed[i] && status == TG_STATUS_OK) {
            status = scan_note(tree, s->path, "cannot be read; check its permissions (sample skipped)");
            free(s->path);
            free(s->mask);
            free(s->annotation);
            free(s->boxes);
            continue;
        }
        m->samples[kept++] = *s;
    }
    m->n_samples = kept;
    free(failed);
    return status;
}

static tg_status note_leftovers(scan_tree *tree)
{
    for (int64_t i = 1; i < tree->n_entries; i++) {
        const scan_entry *e = &tree->entries[i];
        if (e->is_dir || e->used) continue;
        const char *dot = strrchr(e->name, '.');
        if (e->is_image) TG_TRY(scan_note(tree, e->path, "image not placed by the %s layout; not indexed",
                                          tg_layout_name(tree->manifest->layout)));
        else TG_TRY(scan_note(tree, e->path, "not an image file (%s)", dot && dot != e->name ? dot : "no extension"));
    }
    return TG_STATUS_OK;
}

static int compare_samples(const void *a, const void *b)
{
    return strcmp(((const tg_sample *)a)->path, ((const tg_sample *)b)->path);
}

static int compare_notes(const void *a, const void *b)
{
    const tg_note *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->reason, y->reason);
}

static void free_tree(scan_tree *tree)
{
    for (int64_t i = 0; i < tree->n_entries; i++) free(tree->entries[i].path);
    free(tree->entries);
    free(tree->files_by_path);
    free(tree->root);
}

static tg_status no_layout_error(const scan_tree *tree)
{
    char notes[400] = "";
    const tg_manifest *m = tree->manifest;
    for (int64_t i = 0; i < m->n_notes && i < 3; i++) {
        size_t used = strlen(notes);
        snprintf(notes + used, sizeof notes - used, "%s%s: %s", i ? "; " : " Notes: ", m->notes[i].path,
                 m->notes[i].reason);
    }
    int64_t folders = 0;
    for (int64_t i = 1; i < tree->n_entries; i++) folders += tree->entries[i].is_dir && tree->entries[i].images_here > 0;
    return tg_error(TG_STATUS_DATASET,
                    "dataset scan: %s: no dataset layout recognised (%lld images in %lld folders; %lld notes). "
                    "trugrade reads class folders (root/<class>/*.png, at least two classes), split folders "
                    "(root/train/<class>/...), a two-column CSV file,label at the root, images/ + masks/, a COCO .json, "
                    "YOLO (data.yaml + images/ + labels/) or Pascal VOC (Annotations/*.xml); arrange the folder "
                    "like one of them.%s",
                    tree->root, (long long)tree->entries[0].images_below, (long long)folders,
                    (long long)tree->manifest->n_notes, notes);
}

static tg_status scan_into(scan_tree *tree, const tg_scan_options *options)
{
    tg_manifest *m = tree->manifest;
    int64_t root_entry;
    TG_TRY(add_entry(tree, "", -1, 1, &root_entry));
    TG_TRY(walk(tree, root_entry, 0));
    TG_TRY(index_tree(tree));
    tg_status (*const layouts[])(scan_tree *, int *) = {try_segmentation, scan_try_yolo, scan_try_voc, scan_try_coco,
                                                        try_csv, try_class_folders};
    int applied = 0;
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts && !applied; i++) TG_TRY(layouts[i](tree, &applied));
    if (!applied || m->n_samples == 0) return no_layout_error(tree);
    TG_TRY(note_leftovers(tree));
    TG_TRY(hash_samples(tree));
    TG_TRY(tg_dataset_probe_sizes(m, 1));
    if (m->n_samples == 0) return no_layout_error(tree);
    qsort(m->samples, (size_t)m->n_samples, sizeof *m->samples, compare_samples);
    for (int64_t i = 0; i < m->n_samples; i++) m->splits_from_folders |= m->samples[i].split != TG_SPLIT_NONE;
    double ratios[TG_SPLIT_COUNT] = {0.7, 0.15, 0.15};
    if (options && (options->split_ratios[0] || options->split_ratios[1] || options->split_ratios[2]))
        memcpy(ratios, options->split_ratios, sizeof ratios);
    TG_TRY(tg_dataset_assign_splits(m, ratios, options ? options->seed : 0));
    if (m->n_notes > 0) qsort(m->notes, (size_t)m->n_notes, sizeof *m->notes, compare_notes);
    return TG_STATUS_OK;
}

tg_status tg_dataset_scan(const char *root, const tg_scan_options *options, tg_manifest *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        return tg_error(TG_STATUS_DATASET, "dataset scan: %s is not a folder (%s); pass the folder that holds the images",
                        root, errno ? strerror(errno) : "not a directory");
    char *absolute = realpath(root, NULL);
    if (!absolute) return tg_error(TG_STATUS_DATASET, "dataset scan: %s cannot be resolved (%s)", root, strerror(errno));
    if (!tg_utf8_valid(absolute, strlen(absolute))) {
        free(absolute);
        return tg_error(TG_STATUS_DATASET, "dataset scan: the path %s is not valid UTF-8; rename the folder", root);
    }
    scan_tree tree = {.root = absolute, .manifest = out};
    out->version = TG_MANIFEST_VERSION;
    out->root = strdup(absolute);
    tg_status status = out->root ? scan_into(&tree, options) : tg_error(TG_STATUS_NOMEM, "dataset scan: no memory");
    free_tree(&tree);
    if (status != TG_STATUS_OK) tg_manifest_free(out);
    return status;
}
