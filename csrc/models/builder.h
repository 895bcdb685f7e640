/* builder.h: the layers model builders compose. Each adds named parameters
 * ("layer1.0.conv1.weight", torchvision's names) and op nodes to a graph.
 *
 * NOTE: a builder keeps the first failure (status + tg_error message) and every
 * later call does nothing and returns -1, so an architecture reads as a plain
 * sequence of layers with one status check at the end (tg_builder_finish).
 * Builders never run kernels; they only add nodes. */
#ifndef TG_BUILDER_H
#define TG_BUILDER_H

#include <stdint.h>

#include "../core/graph.h"

typedef struct tg_builder {
    tg_graph *graph;
    tg_status status;   /* first failure, or TG_STATUS_OK */
    uint64_t seed;      /* parameter initialisation */
    uint64_t counter;   /* parameters initialised so far */
} tg_builder;

void tg_builder_init(tg_builder *b, tg_graph *graph, uint64_t seed);

/* The first failure of the build (its message is tg_error_message()). */
tg_status tg_builder_finish(const tg_builder *b);

/* An op with attrs given as keyword/value pairs: keys[i] takes values[i]
 * (ints, pairs given as one value, or floats through tg_build_op_float). */
tg_node_id tg_build_op(tg_builder *b, const char *op, const tg_node_id *in, int n_in, int n_attrs,
                       const char *const *keys, const double *values);

tg_node_id tg_build_unary(tg_builder *b, const char *op, tg_node_id x);
tg_node_id tg_build_binary(tg_builder *b, const char *op, tg_node_id x, tg_node_id y);

/* conv2d with weight [out, in/groups, k, k] (kaiming-normal, fan-out) and an optional bias. */
tg_node_id tg_build_conv2d(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels, int64_t kernel,
                           int64_t stride, int64_t padding, int64_t groups, int bias);

/* conv2d as above with a dilation (both dims). */
tg_node_id tg_build_conv2d_dilated(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels, int64_t kernel,
                                   int64_t stride, int64_t padding, int64_t dilation, int64_t groups, int bias);

/* conv_transpose2d with weight [in, out, k, k] (PyTorch's default uniform init), no padding. */
tg_node_id tg_build_conv_transpose2d(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels,
                                     int64_t kernel, int64_t stride, int bias);

/* batchnorm2d with weight (1), bias (0), running_mean, running_var and num_batches_tracked. */
tg_node_id tg_build_batchnorm2d(tg_builder *b, const char *name, tg_node_id x, double eps, double momentum);
/* The same parameters, as one batchnorm2d_silu op: silu(batchnorm2d(x)) without storing
 * the batchnorm output. */
tg_node_id tg_build_batchnorm2d_silu(tg_builder *b, const char *name, tg_node_id x, double eps, double momentum);

/* linear with weight [out, in] and bias [out], PyTorch's default uniform init. */
tg_node_id tg_build_linear(tg_builder *b, const char *name, tg_node_id x, int64_t out_features, int bias);

/* linear with a bias of zeros and the weight initialised as tg_build_reinit takes
 * (bound, normal_std): the classifiers whose architecture sets its own init. */
tg_node_id tg_build_linear_init(tg_builder *b, const char *name, tg_node_id x, int64_t out_features, double bound,
                                double normal_std);

/* Channels (dim 1) and any dim of a node's inferred shape. */
int64_t tg_build_dim(const tg_builder *b, tg_node_id x, int dim);

/* Re-initialises the parameter `name` (an architecture's own init scheme, e.g.
 * torchvision's zero biases or normal(0, 0.01) classifiers): uniform in
 * [-bound, bound] when normal_std == 0 and bound > 0, normal when normal_std > 0,
 * zeros when both are 0. A missing name is a TG_STATUS_INTERNAL build failure. */
void tg_build_reinit(tg_builder *b, const char *name, double bound, double normal_std);

/* torchvision's _make_divisible: `value` rounded to the nearest multiple of
 * `divisor` (at least divisor), never more than 10% below `value`. */
int64_t tg_make_divisible(double value, int64_t divisor);

/* One-input ops with their attrs, for the layers every architecture shares. */
tg_node_id tg_build_max_pool2d(tg_builder *b, tg_node_id x, int64_t kernel, int64_t stride, int64_t padding);
tg_node_id tg_build_avg_pool2d(tg_builder *b, tg_node_id x, int64_t kernel, int64_t stride);
tg_node_id tg_build_adaptive_avg_pool2d(tg_builder *b, tg_node_id x, int64_t output_size);
/* dropout with probability p; no node when p <= 0 (returns x). */
tg_node_id tg_build_dropout(tg_builder *b, tg_node_id x, double p);

#endif
