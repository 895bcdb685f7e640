/* dataset.h: the manifest, the record of a dataset that training consumes.
 *
 * tg_dataset_scan reads a folder, recognises its layout (see dataset_scan.c for
 * the rules), hashes every image, assigns splits and returns a tg_manifest;
 * tg_manifest_write saves it as pretty-printed JSON and tg_manifest_read loads
 * and checks one (manifest.c documents the format). Scanning never decodes
 * pixels: tg_dataset_probe_sizes (called by the scan) fills width/height/channels
 * from the image headers. What the scan skipped (hidden files, non-images, empty
 * class folders, unreadable or unmatched files, images whose header cannot be read)
 * is listed in `notes`, never indexed. */
#ifndef TG_DATASET_H
#define TG_DATASET_H

#include <stdint.h>

#include "../core/status.h"
#include "json.h"

#define TG_MANIFEST_VERSION 1

typedef enum tg_task {
    TG_TASK_CLASSIFICATION = 0,
    TG_TASK_SEGMENTATION,
    TG_TASK_DETECTION,
} tg_task;

typedef enum tg_split {
    TG_SPLIT_TRAIN = 0,
    TG_SPLIT_VAL,
    TG_SPLIT_TEST,
    TG_SPLIT_COUNT,
    TG_SPLIT_NONE = -1,   /* not assigned yet (inside the scan only) */
} tg_split;

typedef enum tg_layout {
    TG_LAYOUT_CLASS_FOLDERS = 0,  /* root/<class>/img, also under split folders */
    TG_LAYOUT_COLLECTIONS,        /* several folders of class folders at any depth */
    TG_LAYOUT_CSV,                /* root/<name>.csv of file,label */
    TG_LAYOUT_SEGMENTATION,       /* images/ + masks/ matched by stem */
    TG_LAYOUT_COCO,               /* a COCO json: images, annotations, categories */
    TG_LAYOUT_YOLO,               /* data.yaml + images/ + labels/ */
    TG_LAYOUT_VOC,                /* Annotations/ of .xml + JPEGImages/ (or images/) */
    TG_LAYOUT_COUNT,
} tg_layout;

/* One box of a detection sample: class index and corners as fractions of the
 * image's width and height (0..1), whatever the source format. */
typedef struct tg_box {
    int32_t label;
    double x_min, y_min, x_max, y_max;
} tg_box;

typedef struct tg_sample {
    char *path;             /* image, relative to the root, '/'-separated UTF-8 */
    int32_t label;          /* classification: class index; otherwise -1 */
    char *mask;             /* segmentation: mask path relative to the root; otherwise NULL */
    char *annotation;       /* detection: the annotation file it came from; otherwise NULL */
    tg_box *boxes;          /* detection: [n_boxes] */
    int64_t n_boxes;
    tg_split split;
    uint64_t content_hash;  /* XXH64 of the file's bytes */
    int64_t size_bytes;
    int64_t width, height, channels; /* from the header (tg_dataset_probe_sizes); 0: not probed */
} tg_sample;

typedef struct tg_note {
    char *path;             /* relative to the root ("" for the root itself) */
    char *reason;
} tg_note;

typedef struct tg_manifest {
    int version;
    char *root;             /* absolute path of the dataset folder */
    tg_task task;
    tg_layout layout;
    char **classes;         /* [n_classes], sorted by the bytes of their UTF-8 names */
    int32_t n_classes;
    tg_sample *samples;     /* [n_samples], sorted by path */
    int64_t n_samples;
    tg_note *notes;         /* [n_notes] */
    int64_t n_notes;
    uint64_t split_seed;
    double split_ratios[TG_SPLIT_COUNT];  /* train, val, test; sum 1 */
    int splits_from_folders;              /* 1: the dataset's own split folders were kept */
} tg_manifest;

typedef struct tg_scan_options {
    double split_ratios[TG_SPLIT_COUNT];  /* all 0: 0.7 / 0.15 / 0.15 */
    uint64_t seed;
} tg_scan_options;

/* Scans `root` into a new manifest. TG_STATUS_DATASET when no layout fits
 * (the message says what was found and what the layouts look like). */
tg_status tg_dataset_scan(const char *root, const tg_scan_options *options, tg_manifest *out);

/* Reads each sample's image header (tg_image_probe) into width/height/channels and
 * checks masks have their image's size. drop_unreadable = 1: such failures leave the
 * sample out with a note (what the scan does); 0: the first one is the error. */
tg_status tg_dataset_probe_sizes(tg_manifest *manifest, int drop_unreadable);

/* Assigns samples whose split is TG_SPLIT_NONE: stratified per class, duplicates
 * (same content hash) kept together, deterministic in `seed` (split.c). */
tg_status tg_dataset_assign_splits(tg_manifest *manifest, const double ratios[TG_SPLIT_COUNT], uint64_t seed);

/* The manifest as pretty-printed JSON text (a new tg_text). */
tg_status tg_manifest_to_json(const tg_manifest *manifest, tg_text *out);

/* Writes the manifest to `path` (TG_STATUS_IO when it cannot). */
tg_status tg_manifest_write(const tg_manifest *manifest, const char *path);

/* Reads a manifest from JSON text; `name` (a file name) starts error messages,
 * which give the line, column and field at fault. */
tg_status tg_manifest_parse(const char *text, size_t length, const char *name, tg_manifest *out);

/* Reads a manifest file. */
tg_status tg_manifest_read(const char *path, tg_manifest *out);

void tg_manifest_free(tg_manifest *manifest);

/* Adds a note (copies both strings); TG_STATUS_NOMEM on failure. */
tg_status tg_manifest_add_note(tg_manifest *manifest, const char *path, const char *reason);

const char *tg_task_name(tg_task task);
const char *tg_split_name(tg_split split);
const char *tg_layout_name(tg_layout layout);

#endif
