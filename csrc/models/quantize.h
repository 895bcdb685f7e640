/* quantize.h: post-training static int8 quantisation of a model (trugrade.quantize).
 *
 * 1. Calibration: tg_quant_calibrate runs the float model forward (eval mode) on a
 *    batch of calibration images and widens, for every quantizable layer, the range
 *    [min, max] of the float values entering it. Call it once per batch.
 * 2. tg_model_quantize builds a new model from the float one and those ranges: each
 *    conv2d and 2-D linear whose input range was observed becomes quantized_conv2d /
 *    quantized_linear (ops/quantized.c) with uint8 activations (scale and zero point from
 *    the range) and int8 weights, symmetric per output channel. A batchnorm2d that is
 *    the only consumer of such a conv is folded into its weights and bias first (its
 *    running statistics, as in eval mode), and a relu that alone reads the layer's
 *    result runs inside it (the op's relu attr). Every other op is copied unchanged and
 *    stays float32.
 * The quantized model is for inference and export: its quantized ops have no backward.
 * Not here: the int8 kernels (ops/qgemm.c), quantisation-aware training. */
#ifndef TG_QUANTIZE_H
#define TG_QUANTIZE_H

#include "model.h"

/* 1 when op node `id` of `graph` would be quantized: a conv2d, or a linear on a 2-D
 * input, whose weight is a float32 parameter or buffer. */
int tg_quant_is_quantizable(const tg_graph *graph, tg_node_id id);

/* Runs `model` forward in eval mode on `images` (float32 [N, C, H, W]) and widens
 * ranges[2 * id], ranges[2 * id + 1] (min, max; start them at +inf, -inf) with the
 * values of input 0 of every quantizable node id. ranges: [n_nodes of the graph, 2].
 * The model's memory plan is restored for its next run. */
tg_status tg_quant_calibrate(tg_model *model, const tg_tensor *images, float *ranges);

/* uint8 scale and zero point covering [min, max] widened to include 0 (so that 0, the
 * padding value, is exact). */
void tg_quant_activation_params(float min, float max, float *scale, int32_t *zero_point);

/* Builds `quantized` (freed by tg_model_free) from `model` and the calibrated ranges
 * ([n_nodes, 2] as filled by tg_quant_calibrate). *n_quantized (may be NULL) gets the
 * number of layers made int8. On failure nothing stays allocated. */
tg_status tg_model_quantize(tg_model *quantized, const tg_model *model, const float *ranges, int *n_quantized);

#endif
