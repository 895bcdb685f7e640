/* schedule.c: the learning-rate schedules. */
#include "schedule.h"

#include <math.h>
#include <string.h>

#define TG_PI 3.14159265358979323846

void tg_schedule_config_default(tg_schedule_config *c, tg_schedule_kind kind, double lr)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = lr;
    c->gamma = 0.1;
    c->step_size = 1;
    c->steps_per_epoch = 1;
    c->pct_start = 0.3;
    c->div_factor = 25.0;
    c->final_div_factor = 1e4;
    c->factor = 0.1;
    c->patience = 10;
    c->threshold = 1e-4;
}

tg_status tg_schedule_init(tg_schedule *s, const tg_schedule_config *c)
{
    memset(s, 0, sizeof *s);
    if (!(c->lr >= 0)) return tg_error(TG_STATUS_CONFIG, "schedule: lr must be >= 0, got %g", c->lr);
    if (c->steps_per_epoch < 1)
        return tg_error(TG_STATUS_CONFIG, "schedule: steps_per_epoch must be >= 1, got %lld", (long long)c->steps_per_epoch);
    if (c->kind == TG_SCHEDULE_KIND_STEP && c->step_size < 1)
        return tg_error(TG_STATUS_CONFIG, "schedule step: step_size must be >= 1 epoch, got %lld", (long long)c->step_size);
    if (c->n_milestones < 0 || c->n_milestones > TG_MAX_MILESTONES)
        return tg_error(TG_STATUS_CONFIG, "schedule multistep: at most %d milestones", TG_MAX_MILESTONES);
    for (int i = 1; i < c->n_milestones; i++)
        if (c->milestones[i] <= c->milestones[i - 1])
            return tg_error(TG_STATUS_CONFIG, "schedule multistep: milestones must increase (%lld after %lld)",
                            (long long)c->milestones[i], (long long)c->milestones[i - 1]);
    int needs_total = c->kind == TG_SCHEDULE_KIND_COSINE || c->kind == TG_SCHEDULE_KIND_WARMUP_COSINE ||
                      c->kind == TG_SCHEDULE_KIND_ONECYCLE;
    if (needs_total && c->total_steps < 1)
        return tg_error(TG_STATUS_CONFIG, "schedule: total_steps must be >= 1, got %lld", (long long)c->total_steps);
    if (c->kind == TG_SCHEDULE_KIND_WARMUP_COSINE && (c->warmup_steps < 0 || c->warmup_steps > c->total_steps))
        return tg_error(TG_STATUS_CONFIG, "schedule warmup_cosine: warmup (%lld steps) must be within the run (%lld steps)",
                        (long long)c->warmup_steps, (long long)c->total_steps);
    if (c->kind == TG_SCHEDULE_KIND_ONECYCLE && !(c->pct_start > 0 && c->pct_start < 1))
        return tg_error(TG_STATUS_CONFIG, "schedule onecycle: pct_start must be in (0, 1), got %g", c->pct_start);
    if (c->kind == TG_SCHEDULE_KIND_PLATEAU && !(c->factor > 0 && c->factor < 1))
        return tg_error(TG_STATUS_CONFIG, "schedule plateau: factor must be in (0, 1), got %g", c->factor);
    s->config = *c;
    s->plateau_lr = c->lr;
    return TG_STATUS_OK;
}

static double cosine(double start, double end, double fraction)
{
    return end + (start - end) * (1.0 + cos(TG_PI * fraction)) / 2.0;
}

double tg_schedule_lr(const tg_schedule *s, int64_t step)
{
    const tg_schedule_config *c = &s->config;
    int64_t epoch = step / c->steps_per_epoch;
    switch (c->kind) {
    case TG_SCHEDULE_KIND_CONSTANT: return c->lr;
    case TG_SCHEDULE_KIND_STEP: return c->lr * pow(c->gamma, (double)(epoch / c->step_size));
    case TG_SCHEDULE_KIND_MULTISTEP: {
        int passed = 0;
        while (passed < c->n_milestones && epoch >= c->milestones[passed]) passed++;
        return c->lr * pow(c->gamma, passed);
    }
    case TG_SCHEDULE_KIND_COSINE:
        return cosine(c->lr, c->min_lr, (double)(step < c->total_steps ? step : c->total_steps) / (double)c->total_steps);
    case TG_SCHEDULE_KIND_WARMUP_COSINE: {
        if (step < c->warmup_steps) return c->lr * (double)(step + 1) / (double)c->warmup_steps;
        int64_t span = c->total_steps - c->warmup_steps;
        if (span <= 0) return c->lr;
        int64_t t = step - c->warmup_steps < span ? step - c->warmup_steps : span;
        return cosine(c->lr, c->min_lr, (double)t / (double)span);
    }
    case TG_SCHEDULE_KIND_ONECYCLE: {
        double initial = c->lr / c->div_factor, final = initial / c->final_div_factor;
        double phase1_end = c->pct_start * (double)c->total_steps - 1.0;
        double phase2_end = (double)c->total_steps - 1.0;
        double t = (double)step;
        if (t <= phase1_end) return cosine(initial, c->lr, t / phase1_end);
        return cosine(c->lr, final, (t - phase1_end) / (phase2_end - phase1_end));
    }
    case TG_SCHEDULE_KIND_PLATEAU: return s->plateau_lr;
    }
    return c->lr;
}

void tg_schedule_observe(tg_schedule *s, double metric)
{
    const tg_schedule_config *c = &s->config;
    if (c->kind != TG_SCHEDULE_KIND_PLATEAU) return;
    int better = !s->seen || (c->mode_max ? metric > s->best * (1.0 + c->threshold)
                                          : metric < s->best * (1.0 - c->threshold));
    s->seen = 1;
    if (better) {
        s->best = metric;
        s->bad_epochs = 0;
        return;
    }
    if (++s->bad_epochs > c->patience) {
        double reduced = s->plateau_lr * c->factor;
        if (reduced < c->min_lr) reduced = c->min_lr;
        s->plateau_lr = reduced;
        s->bad_epochs = 0;
    }
}
