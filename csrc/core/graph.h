/* graph.h: the define-then-run autograd graph and its memory plan.
 *
 * A graph is a list of nodes in creation order (which is a topological order):
 * inputs (data fed each step), parameters and buffers (persistent, named with
 * PyTorch-style dotted names such as "layer1.0.conv1.weight"), and op nodes
 * (one tg_op_def each, attrs copied in). Shapes are inferred when a node is added
 * and again when an input's shape changes.
 *
 * tg_graph_plan lays out every activation, gradient, aux and scratch buffer of a
 * training step in one arena, reusing memory between buffers whose lifetimes do
 * not overlap; the arena size is the exact peak of the step and is known before
 * anything runs. The arena is allocated once per input shape: a steady training
 * step (forward, backward) calls no malloc. A value lives until the last step that
 * reads it: ops declare what their backward does not read (tg_op_def's
 * backward_skips_*), and an in-place op (forward_in_place) takes the memory of an
 * input nothing reads afterwards (relu over batchnorm's output, add over its first
 * operand). Inputs sit first in the arena and survive a replan.
 *
 * Gradients: backward seeds d(loss)/d(loss) = 1 and runs each op's backward in
 * reverse order. Parameter gradients live outside the arena and ACCUMULATE
 * across steps until tg_graph_zero_grad. */
#ifndef TG_GRAPH_H
#define TG_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "../ops/op.h"
#include "status.h"
#include "tensor.h"

typedef int32_t tg_node_id;

typedef enum tg_node_kind {
    TG_NODE_KIND_INPUT,   /* fed by the caller each step; lives in the arena */
    TG_NODE_KIND_PARAM,   /* persistent, trainable, has a persistent gradient */
    TG_NODE_KIND_BUFFER,  /* persistent, not trainable (batchnorm running stats) */
    TG_NODE_KIND_OP,      /* computed by an op; lives in the arena */
} tg_node_kind;

typedef struct tg_node {
    tg_node_kind kind;
    const tg_op_def *op;                            /* op nodes */
    _Alignas(16) unsigned char attrs[TG_MAX_ATTR_BYTES];
    int n_in;
    tg_node_id *in;                                 /* [n_in]; -1 for an absent optional input */
    char *name;                                     /* inputs, params, buffers; NULL for ops */
    tg_tensor value;                                /* shape from infer; data in arena or own storage */
    tg_tensor grad;                                 /* params: own storage; others: arena when needed */
    tg_op_sizes sizes;
    void *aux;                                      /* in the arena */
    int requires_grad;                              /* params: settable (tg_graph_set_requires_grad); ops: derived */
    int force_eval;                                 /* ops: run in eval mode even in training steps */
    int needs_grad;                                 /* set by the plan: its gradient is computed */
    int keep;                                       /* value stays valid after the step (outputs) */
    int last_step;                                  /* set by the plan: last step its value is valid */
} tg_node;

typedef struct tg_graph {
    tg_node *nodes;         /* [n_nodes] */
    int n_nodes, capacity;
    tg_node_id loss;        /* scalar node backward starts from; -1 when planned for forward only */
    unsigned char *arena;   /* [arena_bytes] */
    size_t arena_bytes;     /* planned peak of one step */
    size_t arena_capacity;
    int planned;            /* 0 after any change that needs a new plan */
    void **scratch_forward;  /* [n_nodes] arena pointers */
    void **scratch_backward; /* [n_nodes] arena pointers */
    int *grad_birth;        /* [n_nodes] backward step at which a node's gradient is zeroed */
    uint64_t seed;          /* dropout randomness: mixed with step and node id */
    uint64_t step;          /* incremented by each training forward */
    int training;           /* mode of the last forward, used by its backward */
    int last_phase;         /* 0: nothing ran since the plan; 1: forward; 2: forward and backward */
    int check_finite;       /* 1: forward stops at the first op whose float output is not finite */
    int defer_interrupts;   /* 1: forward and backward run to the end despite an interrupt (the trainer
                             * honours it between steps: a half-run step would leave its state changed) */
} tg_graph;

void tg_graph_init(tg_graph *graph);
void tg_graph_free(tg_graph *graph);

/* Adds an input of the given dtype and shape. Fails on a bad shape or a duplicate name. */
tg_status tg_graph_input(tg_graph *graph, const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                         tg_node_id *id);

/* Adds a parameter (zeros; trainable when requires_grad) or a buffer (zeros). */
tg_status tg_graph_param(tg_graph *graph, const char *name, int ndim, const int64_t *shape, int requires_grad,
                         tg_node_id *id);
tg_status tg_graph_buffer(tg_graph *graph, const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                          tg_node_id *id);

/* Adds an op node; `attrs` is the op's attrs struct (NULL: its defaults). Runs the
 * op's shape rule now and fails with its message. */
tg_status tg_graph_op(tg_graph *graph, const tg_op_def *op, const tg_node_id *inputs, int n_in, const void *attrs,
                      tg_node_id *id);

/* Changes several inputs' shapes together (a batch's images and labels) and
 * re-infers every op's shape; the next run replans. On failure every shape is as
 * before and the message is the first op's that refused. */
tg_status tg_graph_set_input_shapes(tg_graph *graph, int count, const tg_node_id *inputs, const int *ndims,
                                    const int64_t (*shapes)[TG_MAX_DIMS]);

/* Changes an input's shape and re-infers every op's shape (the next run replans). */
tg_status tg_graph_set_input_shape(tg_graph *graph, tg_node_id input, int ndim, const int64_t *shape);

/* Plans memory for a forward pass, and for backward from `loss` when loss >= 0.
 * Allocates the arena only when it must grow. `peak_bytes` (may be NULL) gets the
 * arena size: the peak of activations, gradients and scratch of one step. */
tg_status tg_graph_plan(tg_graph *graph, tg_node_id loss, size_t *peak_bytes);

/* Copies `src` (same dtype and numel) into an input's planned memory. */
tg_status tg_graph_feed(tg_graph *graph, tg_node_id input, const tg_tensor *src);

/* Runs every op forward. training selects batchnorm/dropout behaviour. Returns
 * TG_STATUS_INTERRUPTED between two ops when tg_interrupt_request was called. */
tg_status tg_graph_forward(tg_graph *graph, int training);

/* The name of the parameter an op node reads first (its layer, e.g.
 * "layer1.0.conv1.weight"), or of the nearest earlier parameter; "input" if none. */
const char *tg_graph_layer_name(const tg_graph *graph, tg_node_id node);

/* Runs forward only through node `last` (its value and what it needs); the
 * nodes after it are left unrun. */
tg_status tg_graph_forward_to(tg_graph *graph, int training, tg_node_id last);

/* Runs backward from the planned loss (after tg_graph_forward). */
tg_status tg_graph_backward(tg_graph *graph);

/* Keeps an op node's value valid after a step (a model output); replans. The
 * loss is always kept. Other activations are overwritten as memory is reused. */
tg_status tg_graph_keep(tg_graph *graph, tg_node_id node);

/* 1 when `node`'s value (and gradient) of the last run can still be read. */
int tg_graph_value_valid(const tg_graph *graph, tg_node_id node);

/* Freezes (0) or unfreezes (1) a parameter; the next run replans, so that no
 * gradient flows to it or to what only feeds it. TG_STATUS_VALUE unless `param`
 * is a parameter. */
tg_status tg_graph_set_requires_grad(tg_graph *graph, tg_node_id param, int requires_grad);

/* Makes op node `node` run as in eval mode even in training steps (forward and
 * backward both see training = 0), or undoes that.
 * NOTE: this is how a frozen batchnorm keeps its running statistics: it
 * normalises with them instead of the batch's and leaves them unchanged, as
 * PyTorch fine-tuning does by calling .eval() on frozen BatchNorm modules. It is a
 * node flag rather than an op attr so that any op with a training mode (dropout,
 * stochastic depth) can be pinned the same way, and so that it changes no shape or
 * memory plan. */
tg_status tg_graph_set_force_eval(tg_graph *graph, tg_node_id node, int force_eval);

/* Zeros every parameter gradient. */
void tg_graph_zero_grad(tg_graph *graph);

/* The node with this name, or -1. */
tg_node_id tg_graph_find(const tg_graph *graph, const char *name);

/* Bytes of parameters and buffers, and of parameter gradients (outside the arena). */
size_t tg_graph_persistent_bytes(const tg_graph *graph);

#endif
