/* scan_tree.h: what dataset_scan.c and dataset_detection.c share while a folder is
 * scanned: the walked tree of files and folders, and helpers to add samples and notes.
 * Internal to csrc/data; nothing outside the scan uses it. */
#ifndef TG_SCAN_TREE_H
#define TG_SCAN_TREE_H

#include <stdint.h>

#include "dataset.h"

typedef struct scan_entry {
    char *path;            /* relative to the root, '/'-separated; "" for the root */
    const char *name;      /* the last component of path */
    int64_t parent;        /* entry index of the folder holding it; -1 for the root */
    int is_dir;
    int is_image;          /* files: an image extension trugrade decodes */
    int used;              /* files: taken by the layout (sample, mask, annotation, list) */
    int64_t images_here;   /* folders: image files directly inside */
    int64_t images_below;  /* folders: image files anywhere below */
} scan_entry;

typedef struct scan_tree {
    char *root;            /* absolute path, no trailing '/' */
    scan_entry *entries;   /* [n_entries]; entry 0 is the root */
    int64_t n_entries, capacity;
    int64_t *files_by_path; /* [n_files] entry indices of files, sorted by path */
    int64_t n_files;
    tg_manifest *manifest; /* samples, classes and notes go here */
    int64_t samples_capacity;
} scan_tree;

/* The entry of the file at `path` (relative), or -1. */
int64_t scan_find_file(const scan_tree *tree, const char *path);

/* root + "/" + relative into a new string (NULL when out of memory). */
char *scan_full_path(const scan_tree *tree, const char *relative);

/* Appends a sample for file entry `entry` (marks it used); *out points at it. */
tg_status scan_add_sample(scan_tree *tree, int64_t entry, int32_t label, tg_split split, tg_sample **out);

/* Adds a note with a printf-style reason. */
tg_status scan_note(scan_tree *tree, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The split a folder name stands for (train/training, val/valid/validation/dev,
 * test/testing; any case), or TG_SPLIT_NONE. */
tg_split scan_split_from_name(const char *name);

/* 1 when `name` ends with `.ext` (any case); ext without the dot. */
int scan_has_extension(const char *name, const char *ext);

/* 1 when the file name has an image extension trugrade decodes. */
int scan_is_image_name(const char *name);

/* Sorts and removes duplicates from names[*count], then stores them as the classes. */
tg_status scan_set_classes(scan_tree *tree, char **names, int64_t count);

/* The class index of `name` in the (sorted) classes, or -1. */
int32_t scan_class_index(const tg_manifest *manifest, const char *name);

/* Layouts of dataset_detection.c: each sets *applied when the folder has that layout. */
tg_status scan_try_yolo(scan_tree *tree, int *applied);
tg_status scan_try_voc(scan_tree *tree, int *applied);
tg_status scan_try_coco(scan_tree *tree, int *applied);

#endif
