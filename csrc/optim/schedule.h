/* schedule.h: learning-rate schedules as functions of the step, matching
 * torch.optim.lr_scheduler when PyTorch's scheduler is stepped once per epoch
 * (step, multistep, plateau) or once per batch (cosine, warmup_cosine, onecycle).
 * reduce-on-plateau keeps state and is fed validation metrics. */
#ifndef TG_SCHEDULE_H
#define TG_SCHEDULE_H

#include <stdint.h>

#include "../core/status.h"

#define TG_MAX_MILESTONES 16

typedef enum tg_schedule_kind {
    TG_SCHEDULE_KIND_CONSTANT,
    TG_SCHEDULE_KIND_STEP,           /* lr * gamma^(epoch / step_size) */
    TG_SCHEDULE_KIND_MULTISTEP,      /* lr * gamma^(milestones passed) */
    TG_SCHEDULE_KIND_COSINE,         /* min_lr + (lr - min_lr)(1 + cos(pi t / T)) / 2, per step */
    TG_SCHEDULE_KIND_WARMUP_COSINE,  /* linear from 0 over warmup steps, then cosine over the rest */
    TG_SCHEDULE_KIND_ONECYCLE,       /* torch.optim.lr_scheduler.OneCycleLR (cos, two phases) */
    TG_SCHEDULE_KIND_PLATEAU,        /* ReduceLROnPlateau (rel threshold) */
} tg_schedule_kind;

typedef struct tg_schedule_config {
    tg_schedule_kind kind;
    double lr;                 /* base learning rate (max_lr for onecycle) */
    double gamma;              /* step, multistep */
    int64_t step_size;         /* step: epochs */
    int64_t milestones[TG_MAX_MILESTONES]; /* multistep: epochs, increasing */
    int n_milestones;
    double min_lr;             /* cosine, warmup_cosine floor; plateau floor */
    int64_t warmup_steps;      /* warmup_cosine */
    int64_t total_steps;       /* cosine, warmup_cosine, onecycle */
    int64_t steps_per_epoch;   /* converts steps to epochs (>= 1) */
    double pct_start, div_factor, final_div_factor; /* onecycle: 0.3, 25, 1e4 */
    double factor;             /* plateau: 0.1 */
    int patience;              /* plateau: 10 */
    double threshold;          /* plateau: 1e-4 (relative) */
    int mode_max;              /* plateau: 1 when a larger metric is better */
} tg_schedule_config;

typedef struct tg_schedule {
    tg_schedule_config config;
    double plateau_lr;      /* current lr of reduce-on-plateau */
    double best;            /* best metric seen */
    int bad_epochs;
    int seen;               /* metrics observed */
} tg_schedule;

void tg_schedule_config_default(tg_schedule_config *config, tg_schedule_kind kind, double lr);

/* Validates (TG_STATUS_CONFIG naming the field) and starts the schedule. */
tg_status tg_schedule_init(tg_schedule *schedule, const tg_schedule_config *config);

/* The learning rate of training step `step` (0-based). */
double tg_schedule_lr(const tg_schedule *schedule, int64_t step);

/* Reduce-on-plateau: feeds one validation metric (no effect for other kinds). */
void tg_schedule_observe(tg_schedule *schedule, double metric);

#endif
