/* graph.c: building the graph, inferring shapes, planning the arena, and running
 * forward and backward. Kernels live in csrc/ops; this file only schedules them. */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threads.h"

#define TG_NO_NODE (-1)

void tg_graph_init(tg_graph *graph)
{
    memset(graph, 0, sizeof *graph);
    graph->loss = TG_NO_NODE;
    graph->seed = 0x9e3779b97f4a7c15ull;
}

static void invalidate_plan(tg_graph *graph) { graph->planned = 0; }

void tg_graph_free(tg_graph *graph)
{
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind == TG_NODE_KIND_PARAM || node->kind == TG_NODE_KIND_BUFFER) {
            tg_tensor_free(&node->value);
            tg_tensor_free(&node->grad);
        }
        free(node->in);
        free(node->name);
    }
    free(graph->nodes);
    free(graph->scratch_forward);
    free(graph->scratch_backward);
    free(graph->grad_birth);
    tg_aligned_free(graph->arena);
    tg_graph_init(graph);
}

tg_node_id tg_graph_find(const tg_graph *graph, const char *name)
{
    for (int i = 0; i < graph->n_nodes; i++)
        if (graph->nodes[i].name && strcmp(graph->nodes[i].name, name) == 0) return i;
    return TG_NO_NODE;
}

static tg_status add_node(tg_graph *graph, tg_node_kind kind, const char *name, tg_node **out, tg_node_id *id)
{
    if (name && tg_graph_find(graph, name) != TG_NO_NODE)
        return tg_error(TG_STATUS_VALUE, "graph: the name '%s' is already used; names must be unique", name);
    if (graph->n_nodes == graph->capacity) {
        int capacity = graph->capacity ? graph->capacity * 2 : 64;
        tg_node *nodes = realloc(graph->nodes, sizeof *nodes * (size_t)capacity);
        if (!nodes) return tg_error(TG_STATUS_NOMEM, "graph: out of memory growing to %d nodes", capacity);
        graph->nodes = nodes;
        graph->capacity = capacity;
    }
    tg_node *node = &graph->nodes[graph->n_nodes];
    memset(node, 0, sizeof *node);
    node->kind = kind;
    if (name) {
        node->name = strdup(name);
        if (!node->name) return tg_error(TG_STATUS_NOMEM, "graph: out of memory for a node name");
    }
    *out = node;
    *id = graph->n_nodes++;
    invalidate_plan(graph);
    return TG_STATUS_OK;
}

/* Undoes the last add_node after a failure. */
static void drop_last_node(tg_graph *graph)
{
    tg_node *node = &graph->nodes[--graph->n_nodes];
    tg_tensor_free(&node->value);
    tg_tensor_free(&node->grad);
    free(node->in);
    free(node->name);
}

tg_status tg_graph_input(tg_graph *graph, const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                         tg_node_id *id)
{
    tg_node *node = NULL;
    TG_TRY(add_node(graph, TG_NODE_KIND_INPUT, name, &node, id));
    tg_status status = tg_tensor_set_shape(&node->value, dtype, ndim, shape);
    if (status != TG_STATUS_OK) drop_last_node(graph);
    return status;
}

tg_status tg_graph_param(tg_graph *graph, const char *name, int ndim, const int64_t *shape, int requires_grad,
                         tg_node_id *id)
{
    tg_node *node = NULL;
    TG_TRY(add_node(graph, TG_NODE_KIND_PARAM, name, &node, id));
    tg_status status = tg_tensor_init(&node->value, TG_DTYPE_F32, ndim, shape);
    if (status == TG_STATUS_OK) status = tg_tensor_init(&node->grad, TG_DTYPE_F32, ndim, shape);
    if (status != TG_STATUS_OK) {
        drop_last_node(graph);
        return status;
    }
    node->requires_grad = requires_grad != 0;
    return TG_STATUS_OK;
}

tg_status tg_graph_buffer(tg_graph *graph, const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                          tg_node_id *id)
{
    tg_node *node = NULL;
    TG_TRY(add_node(graph, TG_NODE_KIND_BUFFER, name, &node, id));
    tg_status status = tg_tensor_init(&node->value, dtype, ndim, shape);
    if (status != TG_STATUS_OK) drop_last_node(graph);
    return status;
}

/* Runs node's shape rule on its inputs' current shapes. */
static tg_status infer_node(tg_graph *graph, tg_node *node)
{
    const tg_tensor *inputs[TG_MAX_INPUTS];
    for (int k = 0; k < node->n_in; k++) inputs[k] = node->in[k] >= 0 ? &graph->nodes[node->in[k]].value : NULL;
    TG_TRY(tg_op_check_arity(node->op, node->n_in, inputs));
    tg_tensor shape;
    memset(&shape, 0, sizeof shape);
    memset(&node->sizes, 0, sizeof node->sizes);
    TG_TRY(node->op->infer(inputs, node->n_in, node->attrs, &shape, &node->sizes));
    return tg_tensor_set_shape(&node->value, shape.dtype, shape.ndim, shape.shape);
}

tg_status tg_graph_op(tg_graph *graph, const tg_op_def *op, const tg_node_id *inputs, int n_in, const void *attrs,
                      tg_node_id *id)
{
    if (!op) return tg_error(TG_STATUS_VALUE, "graph: no op given");
    if (n_in < 0 || n_in > TG_MAX_INPUTS)
        return tg_error(TG_STATUS_VALUE, "graph: %s given %d inputs; at most %d", op->name, n_in, TG_MAX_INPUTS);
    for (int k = 0; k < n_in; k++)
        if (inputs[k] < TG_NO_NODE || inputs[k] >= graph->n_nodes)
            return tg_error(TG_STATUS_VALUE, "graph: %s input %d refers to node %d, which does not exist", op->name, k,
                            inputs[k]);
    /* NOTE: copied before add_node writes *id, which may alias an input */
    tg_node_id *copied = malloc(sizeof *copied * (size_t)(n_in ? n_in : 1));
    if (!copied) return tg_error(TG_STATUS_NOMEM, "graph: out of memory adding %s", op->name);
    memcpy(copied, inputs, sizeof *copied * (size_t)n_in);
    tg_node *node = NULL;
    tg_status added = add_node(graph, TG_NODE_KIND_OP, NULL, &node, id);
    if (added != TG_STATUS_OK) {
        free(copied);
        return added;
    }
    node->op = op;
    node->n_in = n_in;
    node->in = copied;
    if (attrs) memcpy(node->attrs, attrs, op->attrs_size);
    else tg_attrs_set_defaults(op, node->attrs);
    tg_status status = infer_node(graph, node);
    if (status != TG_STATUS_OK) drop_last_node(graph);
    return status;
}

tg_status tg_graph_set_input_shapes(tg_graph *graph, int count, const tg_node_id *inputs, const int *ndims,
                                    const int64_t (*shapes)[TG_MAX_DIMS])
{
    tg_tensor saved[8];
    if (count < 1 || count > 8) return tg_error(TG_STATUS_VALUE, "graph: set 1 to 8 input shapes at once, not %d", count);
    int first = graph->n_nodes;
    for (int k = 0; k < count; k++) {
        tg_node_id input = inputs[k];
        if (input < 0 || input >= graph->n_nodes || graph->nodes[input].kind != TG_NODE_KIND_INPUT)
            return tg_error(TG_STATUS_VALUE, "graph: node %d is not an input", input);
        saved[k] = graph->nodes[input].value;
        if (input < first) first = input;
    }
    tg_status status = TG_STATUS_OK;
    for (int k = 0; k < count && status == TG_STATUS_OK; k++)
        status = tg_tensor_set_shape(&graph->nodes[inputs[k]].value, saved[k].dtype, ndims[k], shapes[k]);
    invalidate_plan(graph);
    int failed_at = -1;
    for (int i = first + 1; i < graph->n_nodes && status == TG_STATUS_OK; i++) {
        if (graph->nodes[i].kind != TG_NODE_KIND_OP) continue;
        status = infer_node(graph, &graph->nodes[i]);
        if (status != TG_STATUS_OK) failed_at = i;
    }
    if (status == TG_STATUS_OK) return TG_STATUS_OK;
    /* NOTE: restore every shape so a refused batch leaves the graph as it was */
    char message[1024];
    snprintf(message, sizeof message, "%s", tg_error_message());
    for (int k = 0; k < count; k++) graph->nodes[inputs[k]].value = saved[k];
    for (int j = first + 1; j <= failed_at; j++)
        if (graph->nodes[j].kind == TG_NODE_KIND_OP) infer_node(graph, &graph->nodes[j]);
    return tg_error(status, "%s", message);
}

tg_status tg_graph_set_input_shape(tg_graph *graph, tg_node_id input, int ndim, const int64_t *shape)
{
    int64_t shapes[1][TG_MAX_DIMS];
    memcpy(shapes[0], shape, sizeof(int64_t) * (size_t)(ndim > 0 ? ndim : 0));
    return tg_graph_set_input_shapes(graph, 1, &input, &ndim, (const int64_t (*)[TG_MAX_DIMS])shapes);
}

/* ---- the memory plan ---- */

typedef struct plan_buffer {
    size_t size;        /* bytes, 64-aligned */
    int birth, death;   /* inclusive step range: forward steps 0..n-1, backward n..2n-1 */
    void **target;      /* where the arena address goes */
    size_t offset;
} plan_buffer;

static int compare_by_size(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->birth - y->birth;
}

static int compare_by_offset(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Greedy best placement, largest first: each buffer goes to the lowest offset that
 * does not overlap (in memory) a placed buffer whose lifetime overlaps its own. */
static size_t place_buffers(plan_buffer *buffers, int count)
{
    plan_buffer **order = malloc(sizeof *order * (size_t)(count ? count : 1));
    plan_buffer **live = malloc(sizeof *live * (size_t)(count ? count : 1));
    size_t peak = 0;
    if (!order || !live) {
        free(order);
        free(live);
        return (size_t)-1;
    }
    for (int i = 0; i < count; i++) order[i] = &buffers[i];
    qsort(order, (size_t)count, sizeof *order, compare_by_size);
    for (int i = 0; i < count; i++) {
        plan_buffer *b = order[i];
        int n_live = 0;
        for (int j = 0; j < i; j++)
            if (order[j]->birth <= b->death && b->birth <= order[j]->death) live[n_live++] = order[j];
        qsort(live, (size_t)n_live, sizeof *live, compare_by_offset);
        size_t offset = 0;
        for (int j = 0; j < n_live; j++) {
            if (live[j]->offset >= offset + b->size) break;
            size_t end = live[j]->offset + live[j]->size;
            if (end > offset) offset = end;
        }
        b->offset = offset;
        if (offset + b->size > peak) peak = offset + b->size;
    }
    free(order);
    free(live);
    return peak;
}

static int input_gets_grad(const tg_graph *graph, const tg_node *node, int k)
{
    tg_node_id src = node->in[k];
    if (src < 0 || (k < 64 && (node->op->no_grad_inputs >> k & 1u))) return 0;
    return graph->nodes[src].needs_grad;
}

/* Marks needs_grad: reachable forward from a trainable parameter and backward from the loss. */
static void mark_gradients(tg_graph *graph, tg_node_id loss, unsigned char *reaches_loss)
{
    int n = graph->n_nodes;
    memset(reaches_loss, 0, (size_t)n);
    if (loss >= 0) reaches_loss[loss] = 1;
    for (int i = n - 1; i >= 0; i--) {
        tg_node *node = &graph->nodes[i];
        if (!reaches_loss[i] || node->kind != TG_NODE_KIND_OP || !node->op->backward) continue;
        for (int k = 0; k < node->n_in; k++)
            if (node->in[k] >= 0 && !(k < 64 && (node->op->no_grad_inputs >> k & 1u))) reaches_loss[node->in[k]] = 1;
    }
    for (int i = 0; i < n; i++) {
        tg_node *node = &graph->nodes[i];
        int requires = 0;
        if (node->kind == TG_NODE_KIND_PARAM) requires = node->requires_grad;
        else if (node->kind == TG_NODE_KIND_OP && node->op->backward)
            for (int k = 0; k < node->n_in; k++)
                if (node->in[k] >= 0 && !(k < 64 && (node->op->no_grad_inputs >> k & 1u)) &&
                    graph->nodes[node->in[k]].needs_grad)
                    requires = 1;
        node->needs_grad = requires && reaches_loss[i];
    }
}

/* 1 when node reads input `src` through more than one of its inputs. */
static int reads_twice(const tg_node *node, tg_node_id src)
{
    int seen = 0;
    for (int k = 0; k < node->n_in; k++) seen += node->in[k] == src;
    return seen > 1;
}

/* In-place ops: an op node whose op allows it takes the memory of its in[0] when that
 * input is an op's output of the same size that no step after this one reads (its
 * last_use is this node's forward step). value_root[i] is the node whose buffer holds
 * node i's value (i itself unless it runs in place); value_death[root] is the last
 * step any node sharing that buffer is read. */
static void find_in_place(const tg_graph *graph, const int *last_use, int *value_root, int *value_death)
{
    for (int i = 0; i < graph->n_nodes; i++) {
        const tg_node *node = &graph->nodes[i];
        value_root[i] = i;
        value_death[i] = last_use[i];
        if (node->kind != TG_NODE_KIND_OP || !node->op->forward_in_place || node->n_in < 1) continue;
        tg_node_id src = node->in[0];
        if (src < 0 || graph->nodes[src].kind != TG_NODE_KIND_OP || last_use[src] != i) continue;
        const tg_tensor *x = &graph->nodes[src].value;
        if (x->dtype != node->value.dtype || tg_tensor_nbytes(x) != tg_tensor_nbytes(&node->value)) continue;
        if (reads_twice(node, src)) continue;
        value_root[i] = value_root[src];
        if (last_use[i] > value_death[value_root[i]]) value_death[value_root[i]] = last_use[i];
    }
}

/* Copies the inputs' current values from the old arena to where the new plan puts
 * them in `arena` (first, in node order), so that a value fed before a replan that
 * grows the arena survives it, as it does when the arena is kept. */
static void keep_fed_inputs(const tg_graph *graph, unsigned char *arena)
{
    size_t at = 0;
    for (int i = 0; i < graph->n_nodes; i++) {
        const tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_INPUT) continue;
        const unsigned char *old = node->value.data;
        size_t bytes = tg_tensor_nbytes(&node->value);
        if (old && graph->arena && old >= graph->arena && old + bytes <= graph->arena + graph->arena_capacity)
            memcpy(arena + at, old, bytes);
        at += tg_align64(bytes);
    }
}

tg_status tg_graph_plan(tg_graph *graph, tg_node_id loss, size_t *peak_bytes)
{
    int n = graph->n_nodes;
    if (loss >= n || (loss >= 0 && graph->nodes[loss].kind != TG_NODE_KIND_OP))
        return tg_error(TG_STATUS_VALUE, "graph: loss node %d is not an op node of this graph", loss);
    if (loss >= 0 && graph->nodes[loss].value.dtype != TG_DTYPE_F32)
        return tg_error(TG_STATUS_DTYPE, "graph: the loss must be float32");
    unsigned char *reaches = malloc((size_t)(n ? n : 1));
    int *last_use = malloc(sizeof *last_use * (size_t)(n ? n : 1));
    plan_buffer *buffers = malloc(sizeof *buffers * (size_t)(5 * n + 1));
    void **scratch_forward = calloc((size_t)(n ? n : 1), sizeof *scratch_forward);
    void **scratch_backward = calloc((size_t)(n ? n : 1), sizeof *scratch_backward);
    int *grad_birth = malloc(sizeof *grad_birth * (size_t)(n ? n : 1));
    int *value_root = malloc(sizeof *value_root * (size_t)(n ? n : 1));
    int *value_death = malloc(sizeof *value_death * (size_t)(n ? n : 1));
    tg_status status = TG_STATUS_OK;
    if (!reaches || !last_use || !buffers || !scratch_forward || !scratch_backward || !grad_birth || !value_root ||
        !value_death) {
        status = tg_error(TG_STATUS_NOMEM, "graph: out of memory planning %d nodes", n);
        goto done;
    }
    mark_gradients(graph, loss, reaches);
    int end = 2 * n; /* a step after every other */
    /* last step that reads each node's value; backward steps are 2n-1-i */
    for (int i = 0; i < n; i++) {
        last_use[i] = graph->nodes[i].kind == TG_NODE_KIND_INPUT ? end : i;
        grad_birth[i] = -1;
    }
    for (int j = 0; j < n; j++) {
        tg_node *node = &graph->nodes[j];
        if (node->kind != TG_NODE_KIND_OP) continue;
        int runs_backward = node->needs_grad;
        int bwd = 2 * n - 1 - j;
        int own = runs_backward && !node->op->backward_skips_output ? bwd : j;
        if (own > last_use[j]) last_use[j] = own;
        for (int k = 0; k < node->n_in; k++) {
            tg_node_id src = node->in[k];
            if (src < 0) continue;
            int skipped = k < 64 && (node->op->backward_skips_inputs >> k & 1u);
            int step = runs_backward && !skipped ? bwd : j;
            if (step > last_use[src]) last_use[src] = step;
            if (runs_backward && input_gets_grad(graph, node, k) && graph->nodes[src].kind == TG_NODE_KIND_OP &&
                j > grad_birth[src])
                grad_birth[src] = j;
        }
    }
    if (loss >= 0) {
        grad_birth[loss] = loss;
        graph->nodes[loss].keep = 1;
    }
    for (int i = 0; i < n; i++) {
        if (graph->nodes[i].keep) last_use[i] = end;
        graph->nodes[i].last_step = last_use[i];
    }
    find_in_place(graph, last_use, value_root, value_death);
    int count = 0;
    size_t inputs_bytes = 0;   /* inputs live the whole step: they sit first, in node order */
    for (int i = 0; i < n; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind == TG_NODE_KIND_PARAM || node->kind == TG_NODE_KIND_BUFFER) continue;
        if (node->kind == TG_NODE_KIND_INPUT) inputs_bytes += tg_align64(tg_tensor_nbytes(&node->value));
        else if (value_root[i] == i)
            buffers[count++] = (plan_buffer){tg_align64(tg_tensor_nbytes(&node->value)), i, value_death[i],
                                             &node->value.data, 0};
        if (node->kind != TG_NODE_KIND_OP) continue;
        int bwd = 2 * n - 1 - i;
        if (node->sizes.aux_bytes)
            buffers[count++] = (plan_buffer){tg_align64(node->sizes.aux_bytes), i, node->needs_grad ? bwd : i,
                                             &node->aux, 0};
        if (node->sizes.scratch_forward)
            buffers[count++] = (plan_buffer){tg_align64(node->sizes.scratch_forward), i, i, &scratch_forward[i], 0};
        if (node->needs_grad && node->sizes.scratch_backward)
            buffers[count++] = (plan_buffer){tg_align64(node->sizes.scratch_backward), bwd, bwd,
                                             &scratch_backward[i], 0};
        if (node->needs_grad && grad_birth[i] >= 0) {
            tg_tensor_set_shape(&node->grad, TG_DTYPE_F32, node->value.ndim, node->value.shape);
            buffers[count++] = (plan_buffer){tg_align64(tg_tensor_nbytes(&node->grad)), 2 * n - 1 - grad_birth[i],
                                             bwd, &node->grad.data, 0};
        } else {
            memset(&node->grad, 0, sizeof node->grad);
        }
    }
    size_t peak = place_buffers(buffers, count);
    if (peak == (size_t)-1) {
        status = tg_error(TG_STATUS_NOMEM, "graph: out of memory planning");
        goto done;
    }
    peak += inputs_bytes;
    if (peak > graph->arena_capacity) {
        unsigned char *arena = tg_aligned_alloc(peak);
        if (!arena) {
            status = tg_error(TG_STATUS_NOMEM, "graph: cannot allocate the %zu-byte arena this step needs", peak);
            goto done;
        }
        keep_fed_inputs(graph, arena);
        tg_aligned_free(graph->arena);
        graph->arena = arena;
        graph->arena_capacity = peak;
    }
    size_t input_at = 0;
    for (int i = 0; i < n; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_INPUT) continue;
        node->value.data = graph->arena + input_at;
        input_at += tg_align64(tg_tensor_nbytes(&node->value));
    }
    for (int b = 0; b < count; b++) *buffers[b].target = graph->arena + inputs_bytes + buffers[b].offset;
    for (int i = 0; i < n; i++)
        if (value_root[i] != i) graph->nodes[i].value.data = graph->nodes[value_root[i]].value.data;
    for (int i = 0; i < n; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind == TG_NODE_KIND_OP && !node->sizes.aux_bytes) node->aux = NULL;
    }
    free(graph->scratch_forward);
    free(graph->scratch_backward);
    free(graph->grad_birth);
    graph->scratch_forward = scratch_forward;
    graph->scratch_backward = scratch_backward;
    graph->grad_birth = grad_birth;
    scratch_forward = scratch_backward = NULL;
    grad_birth = NULL;
    graph->arena_bytes = peak;
    graph->loss = loss;
    graph->planned = 1;
    graph->last_phase = 0;
    if (peak_bytes) *peak_bytes = peak;
done:
    free(reaches);
    free(last_use);
    free(value_root);
    free(value_death);
    free(buffers);
    free(scratch_forward);
    free(scratch_backward);
    free(grad_birth);
    return status;
}

tg_status tg_graph_feed(tg_graph *graph, tg_node_id input, const tg_tensor *src)
{
    if (input < 0 || input >= graph->n_nodes || graph->nodes[input].kind != TG_NODE_KIND_INPUT)
        return tg_error(TG_STATUS_VALUE, "graph: node %d is not an input", input);
    tg_node *node = &graph->nodes[input];
    if (!tg_shape_equal(src, &node->value)) TG_TRY(tg_graph_set_input_shape(graph, input, src->ndim, src->shape));
    if (src->dtype != node->value.dtype)
        return tg_error(TG_STATUS_DTYPE, "graph: input '%s' takes %s, got %s", node->name ? node->name : "?",
                        tg_dtype_name(node->value.dtype), tg_dtype_name(src->dtype));
    if (!graph->planned) TG_TRY(tg_graph_plan(graph, graph->loss, NULL));
    memcpy(node->value.data, src->data, tg_tensor_nbytes(src));
    return TG_STATUS_OK;
}

static uint64_t mix_seed(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The randomness of node i in the current step: the same in its forward and backward. */
static uint64_t node_seed(const tg_graph *graph, int i)
{
    return mix_seed(graph->seed ^ mix_seed(graph->step * 0x100000001b3ull + (uint64_t)i));
}

static void gather_inputs(const tg_graph *graph, const tg_node *node, const tg_tensor **inputs)
{
    for (int k = 0; k < node->n_in; k++) inputs[k] = node->in[k] >= 0 ? &graph->nodes[node->in[k]].value : NULL;
}

static tg_status check_interrupt(const tg_graph *graph, const tg_node *node, const char *phase)
{
    if (graph->defer_interrupts || !tg_interrupt_pending()) return TG_STATUS_OK;
    return tg_error(TG_STATUS_INTERRUPTED, "interrupted during %s before %s", phase, node->op->name);
}

tg_status tg_graph_forward(tg_graph *graph, int training)
{
    return tg_graph_forward_to(graph, training, graph->n_nodes - 1);
}

tg_status tg_graph_forward_to(tg_graph *graph, int training, tg_node_id last)
{
    if (!graph->planned) TG_TRY(tg_graph_plan(graph, graph->loss, NULL));
    if (training) graph->step++;
    graph->training = training;
    graph->last_phase = 0;
    for (int i = 0; i <= last && i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_OP) continue;
        TG_TRY(check_interrupt(graph, node, "forward"));
        const tg_tensor *inputs[TG_MAX_INPUTS];
        gather_inputs(graph, node, inputs);
        tg_op_io io = {
            .def = node->op, .attrs = node->attrs, .in = inputs, .n_in = node->n_in, .out = &node->value,
            .aux = node->aux, .scratch = graph->scratch_forward[i], .training = training && !node->force_eval,
            .seed = node_seed(graph, i),
        };
        TG_TRY(node->op->forward(&io));
        if (graph->check_finite && node->value.dtype == TG_DTYPE_F32) {
            const float *v = node->value.data;
            for (int64_t e = 0; e < tg_tensor_numel(&node->value); e++)
                if (!isfinite(v[e]))
                    return tg_error(TG_STATUS_VALUE, "the output of %s (node %d, layer '%s') is not finite (%g)",
                                    node->op->name, i, tg_graph_layer_name(graph, i), v[e]);
        }
    }
    graph->last_phase = 1;
    return TG_STATUS_OK;
}

tg_status tg_graph_backward(tg_graph *graph)
{
    if (!graph->planned || graph->loss < 0)
        return tg_error(TG_STATUS_VALUE, "graph: plan with a loss node (tg_graph_plan) before backward");
    tg_node *loss = &graph->nodes[graph->loss];
    if (!loss->needs_grad) return TG_STATUS_OK;
    float *seed = loss->grad.data;
    for (int64_t e = 0; e < tg_tensor_numel(&loss->grad); e++) seed[e] = 1.0f;
    for (int j = graph->loss; j >= 0; j--) {
        tg_node *node = &graph->nodes[j];
        if (node->kind != TG_NODE_KIND_OP || !node->needs_grad) continue;
        TG_TRY(check_interrupt(graph, node, "backward"));
        const tg_tensor *inputs[TG_MAX_INPUTS];
        tg_tensor *grads[TG_MAX_INPUTS];
        gather_inputs(graph, node, inputs);
        uint64_t fresh = 0;
        for (int k = 0; k < node->n_in; k++) {
            grads[k] = NULL;
            if (!input_gets_grad(graph, node, k)) continue;
            tg_node *src = &graph->nodes[node->in[k]];
            /* NOTE: the gradient is born at the backward of its last consumer: that op
             * writes it fresh when it can, else it is zeroed here (twice is harmless when
             * this op reads the same node twice, which never writes fresh). */
            if (src->kind == TG_NODE_KIND_OP && graph->grad_birth[node->in[k]] == j) {
                if (node->op->backward_writes_fresh && k < 64 && !reads_twice(node, node->in[k])) fresh |= 1ull << k;
                else memset(src->grad.data, 0, tg_tensor_nbytes(&src->grad));
            }
            grads[k] = &src->grad;
        }
        tg_op_io io = {
            .def = node->op, .attrs = node->attrs, .in = inputs, .n_in = node->n_in, .out = &node->value,
            .aux = node->aux, .scratch = graph->scratch_backward[j], .training = graph->training && !node->force_eval,
            .seed = node_seed(graph, j),
            .grad_out = &node->grad, .grad_in = grads, .grad_in_fresh = fresh,
        };
        TG_TRY(node->op->backward(&io));
    }
    graph->last_phase = 2;
    return TG_STATUS_OK;
}

const char *tg_graph_layer_name(const tg_graph *graph, tg_node_id node)
{
    if (node < 0 || node >= graph->n_nodes) return "input";
    const tg_node *n = &graph->nodes[node];
    for (int k = 0; n->kind == TG_NODE_KIND_OP && k < n->n_in; k++)
        if (n->in[k] >= 0 && graph->nodes[n->in[k]].kind == TG_NODE_KIND_PARAM) return graph->nodes[n->in[k]].name;
    for (int i = node - 1; i >= 0; i--)
        if (graph->nodes[i].kind == TG_NODE_KIND_PARAM) return graph->nodes[i].name;
    return "input";
}

tg_status tg_graph_keep(tg_graph *graph, tg_node_id node)
{
    if (node < 0 || node >= graph->n_nodes) return tg_error(TG_STATUS_VALUE, "graph: no node %d to keep", node);
    if (!graph->nodes[node].keep) invalidate_plan(graph);
    graph->nodes[node].keep = 1;
    return TG_STATUS_OK;
}

int tg_graph_value_valid(const tg_graph *graph, tg_node_id node)
{
    if (node < 0 || node >= graph->n_nodes) return 0;
    const tg_node *n = &graph->nodes[node];
    if (n->kind == TG_NODE_KIND_PARAM || n->kind == TG_NODE_KIND_BUFFER) return 1;
    if (!graph->planned || graph->last_phase == 0) return 0;
    int last_step_run = graph->last_phase == 1 ? graph->n_nodes - 1 : 2 * graph->n_nodes - 1;
    return n->last_step >= last_step_run;
}

tg_status tg_graph_set_requires_grad(tg_graph *graph, tg_node_id param, int requires_grad)
{
    if (param < 0 || param >= graph->n_nodes || graph->nodes[param].kind != TG_NODE_KIND_PARAM)
        return tg_error(TG_STATUS_VALUE, "graph: node %d is not a parameter; only parameters can be frozen", param);
    tg_node *node = &graph->nodes[param];
    if (node->requires_grad != (requires_grad != 0)) invalidate_plan(graph);
    node->requires_grad = requires_grad != 0;
    return TG_STATUS_OK;
}

tg_status tg_graph_set_force_eval(tg_graph *graph, tg_node_id node, int force_eval)
{
    if (node < 0 || node >= graph->n_nodes || graph->nodes[node].kind != TG_NODE_KIND_OP)
        return tg_error(TG_STATUS_VALUE, "graph: node %d is not an op node; only ops have a training mode", node);
    graph->nodes[node].force_eval = force_eval != 0;
    return TG_STATUS_OK;
}

void tg_graph_zero_grad(tg_graph *graph)
{
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind == TG_NODE_KIND_PARAM && node->grad.data) memset(node->grad.data, 0, tg_tensor_nbytes(&node->grad));
    }
}

size_t tg_graph_persistent_bytes(const tg_graph *graph)
{
    size_t total = 0;
    for (int i = 0; i < graph->n_nodes; i++) {
        const tg_node *node = &graph->nodes[i];
        if (node->kind == TG_NODE_KIND_PARAM || node->kind == TG_NODE_KIND_BUFFER)
            total += tg_tensor_nbytes(&node->value) + (node->grad.data ? tg_tensor_nbytes(&node->grad) : 0);
    }
    return total;
}
