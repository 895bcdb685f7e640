/* test_graph.c: the graph's memory plan and autograd without Python: gradients of
 * a small graph by hand, arena reuse, gradient accumulation, and no allocation in
 * a steady step (counted through alloc_count.c). */
#include <string.h>

#include "../../csrc/core/graph.h"
#include "alloc_count.h"
#include "check.h"

static void fill(tg_tensor *t, float start, float step)
{
    float *d = t->data;
    for (int64_t i = 0; i < tg_tensor_numel(t); i++) d[i] = start + step * (float)i;
}

/* y = relu(x + w) + (x + w): dy/dw = (x + w > 0) + 1, summed over the batch. */
static void test_gradients_and_steady_state(void)
{
    tg_graph g;
    tg_graph_init(&g);
    int64_t shape[2] = {4, 3};
    tg_node_id x, w, a, r, y;
    CHECK_OK(tg_graph_input(&g, "x", TG_DTYPE_F32, 2, shape, &x));
    CHECK_OK(tg_graph_param(&g, "w", 2, shape, 1, &w));
    tg_node_id in_xw[2] = {x, w};
    CHECK_OK(tg_graph_op(&g, tg_op_find("add"), in_xw, 2, NULL, &a));
    CHECK_OK(tg_graph_op(&g, tg_op_find("relu"), &a, 1, NULL, &r));
    tg_node_id in_ra[2] = {r, a};
    CHECK_OK(tg_graph_op(&g, tg_op_find("add"), in_ra, 2, NULL, &y));
    size_t peak = 0;
    CHECK_OK(tg_graph_plan(&g, y, &peak));
    CHECK(peak > 0 && peak == g.arena_bytes);
    tg_tensor data;
    CHECK_OK(tg_tensor_init(&data, TG_DTYPE_F32, 2, shape));
    fill(&data, -6.0f, 1.0f);
    fill(&g.nodes[w].value, 0.5f, 0.0f);
    long before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 1) before = alloc_count();
        CHECK_OK(tg_graph_feed(&g, x, &data));
        CHECK_OK(tg_graph_forward(&g, 1));
        CHECK_OK(tg_graph_backward(&g));
    }
    CHECK(alloc_count() == before); /* steps 2 and 3 allocate nothing */
    const float *gw = g.nodes[w].grad.data;
    const float *xd = data.data;
    int ok = 1;
    for (int i = 0; i < 12; i++) ok &= gw[i] == 3.0f * ((xd[i] + 0.5f > 0.0f) + 1.0f); /* 3 steps accumulated */
    CHECK(ok);
    tg_graph_zero_grad(&g);
    CHECK(gw[0] == 0.0f);
    const float *yv = g.nodes[y].value.data;
    CHECK(yv[11] == 2.0f * (5.0f + 0.5f) && yv[0] == -6.0f + 0.5f);
    tg_tensor_free(&data);
    tg_graph_free(&g);
}

/* A chain of 50 relus planned for forward only runs in place: the peak is two
 * buffers (x, and one the whole chain shares), not fifty. With backward every relu's
 * output must stay (its backward reads it); the add's output is the first relu's. */
static void test_arena_reuse(void)
{
    tg_graph g;
    tg_graph_init(&g);
    int64_t shape[1] = {1024};
    tg_node_id id, w;
    CHECK_OK(tg_graph_input(&g, "x", TG_DTYPE_F32, 1, shape, &id));
    CHECK_OK(tg_graph_param(&g, "w", 1, shape, 1, &w));
    tg_node_id in[2] = {id, w};
    CHECK_OK(tg_graph_op(&g, tg_op_find("add"), in, 2, NULL, &id));
    for (int i = 0; i < 50; i++) CHECK_OK(tg_graph_op(&g, tg_op_find("relu"), &id, 1, NULL, &id));
    size_t forward_only = 0, training = 0;
    CHECK_OK(tg_graph_plan(&g, -1, &forward_only));
    CHECK(forward_only == 2 * 4096);
    CHECK_OK(tg_graph_plan(&g, id, &training));
    CHECK(training >= 52 * 4096 && training <= 55 * 4096);
    int64_t mismatched[1] = {2048}; /* w stays 1024: add must refuse, and the graph keeps its old shapes */
    CHECK(tg_graph_set_input_shape(&g, 0, 1, mismatched) == TG_STATUS_SHAPE);
    CHECK(g.nodes[0].value.shape[0] == 1024 && g.nodes[id].value.shape[0] == 1024);
    tg_graph_free(&g);
}

int main(void)
{
    test_gradients_and_steady_state();
    test_arena_reuse();
    tg_threads_shutdown();
    return check_report("test_graph");
}
