/* trainer.c: the step loop of an epoch, evaluation, and the in-memory batch source. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"
#include "../ops/gemm.h"

/* ---- the in-memory source ---- */

typedef struct fill_ctx {
    const tg_memory_source *memory;
    const int64_t *indices;
    float *images;           /* [count, C, H, W] */
    int64_t per_sample, plane;
    int64_t channels;
} fill_ctx;

static void fill_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const fill_ctx *c = arg;
    const tg_tensor *images = c->memory->images;
    for (int64_t s = begin; s < end; s++) {
        int64_t index = c->indices[s];
        float *out = c->images + s * c->per_sample;
        for (int64_t ch = 0; ch < c->channels; ch++) {
            float mean = c->memory->mean[ch], inv_std = 1.0f / c->memory->std[ch];
            float *dst = out + ch * c->plane;
            if (images->dtype == TG_DTYPE_U8) {
                const uint8_t *src = (const uint8_t *)images->data + index * c->per_sample + ch * c->plane;
                for (int64_t i = 0; i < c->plane; i++) dst[i] = ((float)src[i] * (1.0f / 255.0f) - mean) * inv_std;
            } else {
                const float *src = (const float *)images->data + index * c->per_sample + ch * c->plane;
                for (int64_t i = 0; i < c->plane; i++) dst[i] = (src[i] - mean) * inv_std;
            }
        }
    }
}

/* The pipeline's path: batch item i is dataset image indices[i], drawn as
 * (seed, epoch, indices[i]) so a sample augments the same way whatever batch it
 * lands in; each thread uses its own scratch slot. */
typedef struct augment_ctx {
    const tg_memory_source *memory;
    int64_t epoch;
    const int64_t *indices;
    float *images;           /* [count, C', H', W'] */
    int64_t per_output;      /* C' * H' * W' */
    tg_status *statuses;     /* [count] */
} augment_ctx;

static void augment_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const augment_ctx *c = arg;
    const tg_memory_source *memory = c->memory;
    const tg_tensor *im = memory->images;
    int64_t shape[3] = {im->shape[1], im->shape[2], im->shape[3]};
    size_t per_image = (size_t)(shape[0] * shape[1] * shape[2]) * tg_dtype_size(im->dtype);
    void *scratch = (char *)memory->scratch + (size_t)thread_index * memory->scratch_bytes;
    for (int64_t i = begin; i < end; i++) {
        if (thread_index >= memory->n_scratch) {
            c->statuses[i] = tg_error(TG_STATUS_VALUE, "the thread count grew after the data source was made");
            continue;
        }
        tg_tensor view;
        tg_tensor_set_shape(&view, im->dtype, 3, shape);
        view.data = (char *)im->data + (size_t)c->indices[i] * per_image;
        view.storage = NULL;
        tg_augment_sample sample = {.image = &view};
        tg_augment_output out = {.image = c->images + i * c->per_output, .image_capacity = c->per_output};
        c->statuses[i] = tg_augment_apply(memory->pipeline, &sample, 1, memory->seed, (uint64_t)c->epoch,
                                          (uint64_t)c->indices[i], scratch, memory->scratch_bytes, &out);
    }
}

static tg_status memory_fill_augmented(const tg_memory_source *memory, int64_t epoch, const int64_t *indices,
                                       int64_t count, float *images)
{
    augment_ctx c = {.memory = memory, .epoch = epoch, .indices = indices, .images = images,
                     .per_output = memory->output_elements, .statuses = memory->statuses};
    tg_parallel_for(count, 1, augment_range, &c);
    for (int64_t i = 0; i < count; i++)
        if (memory->statuses[i] != TG_STATUS_OK) {
            tg_status status = memory->statuses[i];
            tg_augment_output out = {.image = images + i * c.per_output, .image_capacity = c.per_output};
            tg_tensor view;
            const tg_tensor *im = memory->images;
            int64_t shape[3] = {im->shape[1], im->shape[2], im->shape[3]};
            tg_tensor_set_shape(&view, im->dtype, 3, shape);
            view.data = (char *)im->data + (size_t)indices[i] * (size_t)(shape[0] * shape[1] * shape[2]) *
                        tg_dtype_size(im->dtype);
            view.storage = NULL;
            tg_augment_sample sample = {.image = &view};
            /* rerun the failing item on this thread to recover its message */
            tg_augment_apply(memory->pipeline, &sample, 1, memory->seed, (uint64_t)epoch, (uint64_t)indices[i],
                             memory->scratch, memory->scratch_bytes, &out);
            return tg_error(status, "augmenting training image %lld: %s", (long long)indices[i], tg_error_message());
        }
    return TG_STATUS_OK;
}

static tg_status memory_fill(void *ctx, int64_t epoch, const int64_t *indices, int64_t count, float *images,
                             int64_t *labels)
{
    const tg_memory_source *memory = ctx;
    const tg_tensor *im = memory->images;
    if (memory->pipeline) {
        TG_TRY(memory_fill_augmented(memory, epoch, indices, count, images));
    } else {
        fill_ctx c = {.memory = memory, .indices = indices, .images = images, .channels = im->shape[1],
                      .plane = im->shape[2] * im->shape[3]};
        c.per_sample = c.channels * c.plane;
        tg_parallel_for(count, 16, fill_range, &c);
    }
    const tg_tensor *lab = memory->labels;
    int64_t per_target = lab->shape[0] ? tg_tensor_numel(lab) / lab->shape[0] : 1;
    const int64_t *all_labels = lab->data;   /* [N, per_target] */
    for (int64_t s = 0; s < count; s++)
        memcpy(labels + s * per_target, all_labels + indices[s] * per_target, sizeof(int64_t) * (size_t)per_target);
    return TG_STATUS_OK;
}

tg_status tg_memory_source_bind(tg_memory_source *memory, int64_t max_batch, tg_batch_source *source)
{
    const tg_tensor *im = memory->images, *lab = memory->labels;
    char a[96], b[96];
    if (im->ndim != 4 || (im->dtype != TG_DTYPE_U8 && im->dtype != TG_DTYPE_F32))
        return tg_error(TG_STATUS_SHAPE, "training images must be uint8 or float32 (N, C, H, W), got %s %s",
                        tg_dtype_name(im->dtype), tg_shape_str(im, a, sizeof a));
    if (im->shape[1] > TG_MAX_CHANNELS)
        return tg_error(TG_STATUS_SHAPE, "training images have %lld channels; at most %d",
                        (long long)im->shape[1], TG_MAX_CHANNELS);
    if ((lab->ndim != 1 && lab->ndim != 3) || lab->dtype != TG_DTYPE_I64 || lab->shape[0] != im->shape[0])
        return tg_error(TG_STATUS_SHAPE, "labels must be int64 (N,) class labels or (N, H, W) masks matching %lld "
                        "images, got %s %s", (long long)im->shape[0], tg_dtype_name(lab->dtype),
                        tg_shape_str(lab, b, sizeof b));
    if (lab->ndim == 3 && memory->pipeline)
        return tg_error(TG_STATUS_UNSUPPORTED, "training: an in-memory augment pipeline transforms images only, not "
                        "the masks %s; stream segmentation data through trugrade.data.Loader to augment both",
                        tg_shape_str(lab, b, sizeof b));
    for (int ch = 0; ch < im->shape[1]; ch++)
        if (!(memory->std[ch] > 0))
            return tg_error(TG_STATUS_VALUE, "normalisation std of channel %d must be > 0, got %g", ch, memory->std[ch]);
    memory->scratch = NULL;
    memory->statuses = NULL;
    if (memory->pipeline) {
        int64_t out_shape[3];
        TG_TRY(tg_augment_output_shape(memory->pipeline, im->shape[1], im->shape[2], im->shape[3], memory->seed, 0, 0,
                                       out_shape));
        memory->scratch_bytes = tg_align64(tg_augment_scratch_bytes(memory->pipeline, im->shape[1], im->shape[2],
                                                                    im->shape[3], 0));
        memory->n_scratch = tg_threads_count();
        memory->output_elements = out_shape[0] * out_shape[1] * out_shape[2];
        memory->scratch = tg_aligned_alloc(memory->scratch_bytes * (size_t)memory->n_scratch);
        memory->statuses = calloc((size_t)(max_batch > 0 ? max_batch : 1), sizeof *memory->statuses);
        if (!memory->scratch || !memory->statuses) {
            tg_memory_source_free(memory);
            return tg_error(TG_STATUS_NOMEM, "training: out of memory for augmentation scratch");
        }
    }
    source->ctx = memory;
    source->size = im->shape[0];
    source->target_elements_per_sample = lab->ndim == 3 ? lab->shape[1] * lab->shape[2] : 1;
    source->fill = memory_fill;
    source->begin_epoch = NULL;
    return TG_STATUS_OK;
}

void tg_memory_source_free(tg_memory_source *memory)
{
    tg_aligned_free(memory->scratch);
    free(memory->statuses);
    memory->scratch = NULL;
    memory->statuses = NULL;
}

/* ---- epoch order ---- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tg_epoch_order(uint64_t seed, int64_t epoch, int64_t n, int shuffle, int64_t *order)
{
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    uint64_t state = seed ^ (0xa0761d6478bd642full * (uint64_t)(epoch + 1));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&state) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* ---- weight EMA ---- */

#define TG_EMA_GRAIN 16384

static int ema_tracks(const tg_node *node)
{
    if (node->value.dtype != TG_DTYPE_F32) return 0;
    if (node->kind == TG_NODE_KIND_PARAM) return 1;
    return node->kind == TG_NODE_KIND_BUFFER && strncmp(node->name, "loss.", 5) != 0;
}

static tg_status ema_init(tg_trainer *t)
{
    tg_graph *g = &t->model->graph;
    size_t floats = 0;
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (ema_tracks(&g->nodes[i])) {
            count++;
            floats += (size_t)tg_tensor_numel(&g->nodes[i].value);
        }
    t->ema = calloc((size_t)(count ? count : 1), sizeof *t->ema);
    t->ema_block = tg_aligned_alloc((floats ? floats : 1) * sizeof(float));
    if (!t->ema || !t->ema_block)
        return tg_error(TG_STATUS_NOMEM, "training: out of memory for the weight EMA (%zu floats)", floats);
    float *cursor = t->ema_block;
    for (int i = 0; i < g->n_nodes; i++) {
        tg_node *node = &g->nodes[i];
        if (!ema_tracks(node)) continue;
        tg_ema_slot *slot = &t->ema[t->n_ema++];
        slot->value = &node->value;
        slot->average = cursor;
        slot->name = node->name;
        cursor += tg_tensor_numel(&node->value);
    }
    t->ema_eval = 1;
    tg_trainer_ema_reset(t);
    return TG_STATUS_OK;
}

void tg_trainer_ema_reset(tg_trainer *t)
{
    for (int i = 0; i < t->n_ema; i++)
        memcpy(t->ema[i].average, t->ema[i].value->data, tg_tensor_nbytes(t->ema[i].value));
}

typedef struct ema_ctx {
    float *average;          /* [n] */
    float *value;            /* [n] */
    float keep_out;          /* 1 - decay */
} ema_ctx;

static void ema_update_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const ema_ctx *c = arg;
    float *restrict a = c->average;
    const float *restrict v = c->value;
    const float k = c->keep_out;
    for (int64_t i = begin; i < end; i++) a[i] += k * (v[i] - a[i]);
}

static void ema_swap_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const ema_ctx *c = arg;
    float *restrict a = c->average, *restrict v = c->value;
    for (int64_t i = begin; i < end; i++) {
        float x = a[i];
        a[i] = v[i];
        v[i] = x;
    }
}

static void ema_update(tg_trainer *t)
{
    for (int i = 0; i < t->n_ema; i++) {
        ema_ctx c = {.average = t->ema[i].average, .value = t->ema[i].value->data,
                     .keep_out = (float)(1.0 - t->options.ema_decay)};
        tg_parallel_for(tg_tensor_numel(t->ema[i].value), TG_EMA_GRAIN, ema_update_range, &c);
    }
}

void tg_trainer_ema_swap(tg_trainer *t)
{
    for (int i = 0; i < t->n_ema; i++) {
        ema_ctx c = {.average = t->ema[i].average, .value = t->ema[i].value->data};
        tg_parallel_for(tg_tensor_numel(t->ema[i].value), TG_EMA_GRAIN, ema_swap_range, &c);
    }
}

/* ---- trainer ---- */

tg_status tg_trainer_init(tg_trainer *t, tg_model *model, const tg_optim_config *optim,
                          const tg_schedule_config *schedule, const tg_train_options *options,
                          const tg_batch_source *train)
{
    memset(t, 0, sizeof *t);
    if (!(options->ema_decay >= 0.0 && options->ema_decay < 1.0))
        return tg_error(TG_STATUS_CONFIG, "training: ema_decay must be in (0, 1), or 0 for no EMA; got %g",
                        options->ema_decay);
    if (options->batch_size < 1 || options->epochs < 1 || options->accumulate < 1)
        return tg_error(TG_STATUS_CONFIG, "training: batch_size, epochs and accumulate must be >= 1 (got %lld, %lld, %lld)",
                        (long long)options->batch_size, (long long)options->epochs, (long long)options->accumulate);
    if (train->size < 1) return tg_error(TG_STATUS_DATASET, "training: the training set is empty");
    const tg_tensor *input = &model->graph.nodes[model->input].value;
    const tg_tensor *target = &model->graph.nodes[model->target].value;
    int64_t target_elements = 1;   /* [N] labels: 1; [N, H, W] masks: H * W */
    for (int d = 1; d < target->ndim; d++) target_elements *= target->shape[d];
    int64_t given = train->target_elements_per_sample > 0 ? train->target_elements_per_sample : 1;
    if (given != target_elements) {
        char shape[96];
        return tg_error(TG_STATUS_SHAPE, "training: the model's target is %s (%lld values per sample) but the data "
                        "gives %lld per sample; give class labels (N,) to a classifier and masks (N, H, W) at the "
                        "model's input size to a segmentation model", tg_shape_str(target, shape, sizeof shape),
                        (long long)target_elements, (long long)given);
    }
    t->model = model;
    t->target_elements = target_elements;
    t->options = *options;
    t->train = *train;
    TG_TRY(tg_schedule_init(&t->schedule, schedule));
    TG_TRY(tg_optimizer_init(&t->optimizer, optim, &model->graph));
    int64_t per_sample = input->shape[1] * input->shape[2] * input->shape[3];
    t->order = malloc(sizeof *t->order * (size_t)train->size);
    t->batch_images = tg_aligned_alloc(sizeof(float) * (size_t)(per_sample * options->batch_size));
    t->batch_labels = tg_aligned_alloc(sizeof(int64_t) * (size_t)(target_elements * options->batch_size));
    t->batch_indices = malloc(sizeof(int64_t) * (size_t)options->batch_size);
    int64_t steps = (train->size + options->batch_size - 1) / options->batch_size;
    t->step_losses = calloc((size_t)steps, sizeof(float));
    t->step_lrs = calloc((size_t)steps, sizeof(float));
    if (!t->order || !t->batch_images || !t->batch_labels || !t->batch_indices || !t->step_losses || !t->step_lrs) {
        tg_trainer_free(t);
        return tg_error(TG_STATUS_NOMEM, "training: out of memory for batch buffers");
    }
    t->progress.steps_per_epoch = steps;
    if (options->ema_decay > 0.0) {
        tg_status status = ema_init(t);
        if (status != TG_STATUS_OK) {
            tg_trainer_free(t);
            return status;
        }
    }
    return TG_STATUS_OK;
}

void tg_trainer_free(tg_trainer *t)
{
    tg_optimizer_free(&t->optimizer);
    free(t->order);
    tg_aligned_free(t->batch_images);
    tg_aligned_free(t->batch_labels);
    free(t->batch_indices);
    free(t->step_losses);
    free(t->step_lrs);
    free(t->ema);
    tg_aligned_free(t->ema_block);
    memset(t, 0, sizeof *t);
}

/* Feeds a batch of `count` samples already in the batch buffers. */
static tg_status feed_batch(tg_trainer *t, int64_t count)
{
    tg_model *m = t->model;
    tg_graph *g = &m->graph;
    const tg_tensor *input = &g->nodes[m->input].value;
    const tg_tensor *target = &g->nodes[m->target].value;
    /* NOTE: the target keeps the model's rank: [count] labels or [count, H, W] masks */
    tg_tensor images = {.dtype = TG_DTYPE_F32, .ndim = 4, .data = t->batch_images};
    tg_tensor labels = {.dtype = TG_DTYPE_I64, .ndim = target->ndim, .data = t->batch_labels};
    int64_t shapes[2][TG_MAX_DIMS] = {{count, input->shape[1], input->shape[2], input->shape[3], 1}, {count, 1, 1, 1, 1}};
    for (int d = 1; d < target->ndim; d++) shapes[1][d] = target->shape[d];
    memcpy(images.shape, shapes[0], sizeof shapes[0]);
    memcpy(labels.shape, shapes[1], sizeof shapes[1]);
    if (input->shape[0] != count) {
        tg_node_id ids[2] = {m->input, m->target};
        int ndims[2] = {4, target->ndim};
        TG_TRY(tg_graph_set_input_shapes(g, 2, ids, ndims, (const int64_t (*)[TG_MAX_DIMS])shapes));
    }
    TG_TRY(tg_graph_feed(g, m->input, &images));
    return tg_graph_feed(g, m->target, &labels);
}

static tg_status ensure_training_plan(tg_trainer *t)
{
    tg_graph *g = &t->model->graph;
    if (g->planned && g->loss == t->model->loss) return TG_STATUS_OK;
    return tg_graph_plan(g, t->model->loss, NULL);
}

static tg_status run_epoch_steps(tg_trainer *t)
{
    tg_train_progress *p = &t->progress;
    tg_model *m = t->model;
    int64_t n = t->train.size, batch = t->options.batch_size;
    tg_epoch_order(t->options.seed, p->epoch, n, t->options.shuffle, t->order);
    if (p->step_in_epoch == 0) p->loss_sum = 0.0;
    TG_TRY(ensure_training_plan(t));
    if (t->train.begin_epoch)
        TG_TRY(t->train.begin_epoch(t->train.ctx, p->epoch, t->order, n, batch, p->step_in_epoch));
    /* NOTE: accumulation windows are counted from the start of each epoch, so the last
     * window of an epoch may be short and the next epoch starts a fresh one; a window's
     * gradient is the mean of its batch gradients. An interrupt is honoured only as a
     * window starts, where no gradient is pending, so a resume continues bit-identically. */
    const int64_t accumulate = t->options.accumulate;
    for (; p->step_in_epoch < p->steps_per_epoch; ) {
        int64_t window_start = p->step_in_epoch - p->step_in_epoch % accumulate;
        int64_t window_end = window_start + accumulate < p->steps_per_epoch ? window_start + accumulate
                                                                             : p->steps_per_epoch;
        if (p->step_in_epoch == window_start && tg_interrupt_pending())
            return tg_error(TG_STATUS_INTERRUPTED, "training interrupted at epoch %lld step %lld",
                            (long long)p->epoch + 1, (long long)p->step_in_epoch);
        int64_t start = p->step_in_epoch * batch;
        int64_t count = start + batch <= n ? batch : n - start;
        TG_TRY(t->train.fill(t->train.ctx, p->epoch, t->order + start, count, t->batch_images, t->batch_labels));
        TG_TRY(feed_batch(t, count));
        if (!m->graph.planned) TG_TRY(tg_graph_plan(&m->graph, m->loss, NULL));
        if (p->step_in_epoch == window_start) {
            tg_graph_zero_grad(&m->graph);
            /* NOTE: the EMA starts from the weights (and running statistics) as the first
             * update's batches begin, so weights loaded after the trainer was made are its w_0 */
            if (t->n_ema && t->optimizer_steps == 0) tg_trainer_ema_reset(t);
        }
        TG_TRY(tg_graph_forward(&m->graph, 1));
        double loss = ((const float *)m->graph.nodes[m->loss].value.data)[0];
        if (!isfinite(loss)) {
            /* NOTE: replay the same step (same dropout draw) with checks to name the first layer */
            m->graph.step--;
            m->graph.check_finite = 1;
            tg_status replay = tg_graph_forward(&m->graph, 1);
            m->graph.check_finite = 0;
            char where[512] = "";
            if (replay != TG_STATUS_OK) snprintf(where, sizeof where, ": %s", tg_error_message());
            return tg_error(TG_STATUS_VALUE, "training stopped: the loss is %g at epoch %lld step %lld%s; the weights "
                            "are those before this step", loss, (long long)p->epoch + 1, (long long)p->step_in_epoch,
                            where);
        }
        TG_TRY(tg_graph_backward(&m->graph));
        const char *bad = tg_optimizer_first_nonfinite_grad(&t->optimizer);
        if (bad)
            return tg_error(TG_STATUS_VALUE, "training stopped: the gradient of '%s' is not finite at epoch %lld step "
                            "%lld (first such parameter in the model's order)", bad, (long long)p->epoch + 1,
                            (long long)p->step_in_epoch);
        double lr = tg_schedule_lr(&t->schedule, t->optimizer_steps);
        if (p->step_in_epoch + 1 == window_end) {
            /* NOTE: clipping acts on the mean gradient, as it does after loss / k in PyTorch */
            if (window_end - window_start > 1)
                tg_optimizer_scale_grads(&t->optimizer, 1.0 / (double)(window_end - window_start));
            if (t->options.grad_clip_value > 0) tg_clip_grad_value(&t->optimizer, t->options.grad_clip_value);
            if (t->options.grad_clip_norm > 0) tg_clip_grad_norm(&t->optimizer, t->options.grad_clip_norm);
            TG_TRY(tg_optimizer_step(&t->optimizer, lr));
            t->optimizer_steps++;
            if (t->n_ema) ema_update(t);
        }
        p->last_loss = loss;
        p->last_lr = lr;
        t->step_losses[p->step_in_epoch] = (float)loss;
        t->step_lrs[p->step_in_epoch] = (float)lr;
        p->loss_sum += loss;
        p->samples_done = start + count;
        __atomic_store_n(&p->global_step, p->global_step + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&p->step_in_epoch, p->step_in_epoch + 1, __ATOMIC_RELEASE);
    }
    p->epoch++;
    p->step_in_epoch = 0;
    p->samples_done = 0;
    return TG_STATUS_OK;
}

tg_status tg_trainer_run_epoch(tg_trainer *t)
{
    int previous = tg_gemm_set_bf16_operands(t->options.bf16);
    t->model->graph.defer_interrupts = 1;   /* honoured as an accumulation window starts */
    tg_status status = run_epoch_steps(t);
    t->model->graph.defer_interrupts = 0;
    tg_gemm_set_bf16_operands(previous);
    return status;
}

static tg_status evaluate_batches(tg_trainer *t, const tg_batch_source *source, float *logits, double *mean_loss);

tg_status tg_trainer_evaluate(tg_trainer *t, const tg_batch_source *source, float *logits, double *mean_loss)
{
    int previous = tg_gemm_set_bf16_operands(t->options.bf16);
    tg_status status = evaluate_batches(t, source, logits, mean_loss);
    tg_gemm_set_bf16_operands(previous);
    return status;
}

static tg_status evaluate_batches(tg_trainer *t, const tg_batch_source *source, float *logits, double *mean_loss)
{
    tg_model *m = t->model;
    int64_t batch = t->options.batch_size, n = source->size;
    tg_graph *g = &m->graph;
    double loss_sum = 0.0;
    int64_t given = source->target_elements_per_sample > 0 ? source->target_elements_per_sample : 1;
    if (given != t->target_elements)
        return tg_error(TG_STATUS_SHAPE, "evaluation: the model takes %lld target values per sample (%s) but the data "
                        "gives %lld", (long long)t->target_elements, t->target_elements == 1 ? "class labels" : "masks",
                        (long long)given);
    const tg_tensor *output = &g->nodes[m->output].value;
    int64_t per_output = 1;   /* classes, or classes * H * W */
    for (int d = 1; d < output->ndim; d++) per_output *= output->shape[d];
    /* NOTE: before the first update the averages may predate weights loaded since; the
     * live weights are w_0 then */
    int swapped = t->n_ema && t->ema_eval && t->optimizer_steps > 0;
    if (swapped) tg_trainer_ema_swap(t);
    tg_status status = TG_STATUS_OK;
    for (int64_t start = 0; start < n && status == TG_STATUS_OK; start += batch) {
        if (tg_interrupt_pending()) {
            status = tg_error(TG_STATUS_INTERRUPTED, "evaluation interrupted");
            break;
        }
        int64_t count = start + batch <= n ? batch : n - start;
        for (int64_t i = 0; i < count; i++) t->batch_indices[i] = start + i;
        status = source->fill(source->ctx, 0, t->batch_indices, count, t->batch_images, t->batch_labels);
        if (status == TG_STATUS_OK) status = feed_batch(t, count);
        if (status == TG_STATUS_OK && !g->planned) status = tg_graph_plan(g, m->loss, NULL);
        if (status == TG_STATUS_OK) status = tg_graph_forward(g, 0);
        if (status != TG_STATUS_OK) break;
        loss_sum += ((const float *)g->nodes[m->loss].value.data)[0] * (double)count;
        memcpy(logits + start * per_output, g->nodes[m->output].value.data,
               sizeof(float) * (size_t)(count * per_output));
    }
    if (swapped) tg_trainer_ema_swap(t);
    if (status != TG_STATUS_OK) return status;
    if (mean_loss) *mean_loss = n ? loss_sum / (double)n : 0.0;
    return TG_STATUS_OK;
}
