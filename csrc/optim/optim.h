/* optim.h: optimizers over a graph's trainable parameters, and gradient clipping.
 *
 * SGD (momentum, dampening, nesterov; L2 weight decay added to the gradient as
 * torch.optim.SGD does), Adam (L2 as torch.optim.Adam) and AdamW (decoupled decay
 * as torch.optim.AdamW), each matching PyTorch's update to float32 rounding.
 * Weight decay skips norm weights and biases (parameters of <= 1 dim) unless
 * decay_norm_and_bias is set. Each parameter may carry its own lr scale (groups).
 * State lives in one allocation made at init; a step allocates nothing. */
#ifndef TG_OPTIM_H
#define TG_OPTIM_H

#include <stdint.h>

#include "../core/graph.h"

typedef enum tg_optim_kind {
    TG_OPTIM_KIND_SGD,
    TG_OPTIM_KIND_ADAM,
    TG_OPTIM_KIND_ADAMW,
} tg_optim_kind;

typedef struct tg_optim_config {
    tg_optim_kind kind;
    double momentum;            /* SGD */
    double dampening;           /* SGD */
    int nesterov;               /* SGD; needs momentum > 0 and dampening 0 */
    double beta1, beta2, eps;   /* Adam, AdamW */
    double weight_decay;
    int decay_norm_and_bias;    /* 0 (default): no decay on parameters of <= 1 dim */
} tg_optim_config;

void tg_optim_config_default(tg_optim_config *config, tg_optim_kind kind);

typedef struct tg_optim_slot {
    tg_tensor *param;      /* [numel] float32, the graph's storage */
    tg_tensor *grad;       /* [numel] float32 */
    float *m;              /* [numel] momentum buffer / first moment */
    float *v;              /* [numel] second moment (Adam) or NULL */
    double weight_decay;   /* this parameter's decay (0 for norms and biases by default) */
    double lr_scale;       /* per-group multiplier of the learning rate (1) */
    const char *name;
} tg_optim_slot;

typedef struct tg_optimizer {
    tg_optim_config config;
    tg_optim_slot *slots;   /* [n_slots] */
    int n_slots;
    float *state;           /* one block holding every m and v */
    size_t state_floats;
    int64_t step;           /* steps taken (Adam's t) */
    const tg_graph *graph;  /* the graph whose parameters the slots point into */
    const tg_node *nodes_at_init; /* graph->nodes when the slots were made: a step checks it */
    int momentum_started;   /* SGD: buffers hold a value */
} tg_optimizer;

/* Collects every trainable parameter of `graph`. TG_STATUS_VALUE for a config out
 * of range (negative lr terms, nesterov without momentum), naming the field. */
tg_status tg_optimizer_init(tg_optimizer *opt, const tg_optim_config *config, tg_graph *graph);
void tg_optimizer_free(tg_optimizer *opt);

/* Sets lr_scale on every parameter whose name matches the glob `pattern` (fnmatch);
 * returns the number matched in *matched. */
tg_status tg_optimizer_set_lr_scale(tg_optimizer *opt, const char *pattern, double scale, int *matched);

/* One update with learning rate lr (times each slot's lr_scale). TG_STATUS_VALUE
 * when the graph gained nodes since init (the slots would point to moved memory). */
tg_status tg_optimizer_step(tg_optimizer *opt, double lr);

/* The global L2 norm of all gradients (deterministic order). When max_norm > 0 and
 * the norm exceeds it, scales every gradient by max_norm / (norm + 1e-6) like
 * torch.nn.utils.clip_grad_norm_. */
double tg_clip_grad_norm(tg_optimizer *opt, double max_norm);

/* Multiplies every gradient by factor (gradient accumulation's mean). */
void tg_optimizer_scale_grads(tg_optimizer *opt, double factor);

/* Clamps every gradient to [-value, value]. */
void tg_clip_grad_value(tg_optimizer *opt, double value);

/* The first parameter whose gradient holds NaN or Inf (its name), or NULL. */
const char *tg_optimizer_first_nonfinite_grad(const tg_optimizer *opt);

#endif
