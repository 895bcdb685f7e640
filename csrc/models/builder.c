/* builder.c: named layers over the graph, and their PyTorch-style initialisation. */
#include "builder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void tg_builder_init(tg_builder *b, tg_graph *graph, uint64_t seed)
{
    b->graph = graph;
    b->status = TG_STATUS_OK;
    b->seed = seed;
    b->counter = 0;
}

tg_status tg_builder_finish(const tg_builder *b) { return b->status; }

static tg_node_id fail(tg_builder *b, tg_status status)
{
    if (b->status == TG_STATUS_OK) b->status = status;
    return -1;
}

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Two uniforms in (0, 1) (24 bits each) from position `pair` of the counter-based stream `key`. */
static void uniform_pair(uint64_t key, uint64_t pair, float *u1, float *u2)
{
    uint64_t h = splitmix64(key + pair * 0x9e3779b97f4a7c15ull);
    *u1 = ((float)(h >> 40) + 0.5f) * 0x1.0p-24f;
    *u2 = ((float)((h >> 8) & 0xffffffu) + 0.5f) * 0x1.0p-24f;
}

typedef struct init_ctx {
    float *data;        /* [numel] */
    int64_t numel;
    uint64_t key;
    double bound, normal_std;
} init_ctx;

/* NOTE: element i depends only on (key, i), so the values are the same whatever
 * the thread count; a unit is a pair of elements (one Box-Muller draw). */
static void init_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const init_ctx *c = arg;
    for (int64_t pair = begin; pair < end; pair++) {
        int64_t i = 2 * pair;
        float u1, u2, first, second;
        uniform_pair(c->key, (uint64_t)pair, &u1, &u2);
        if (c->normal_std > 0.0) {
            /* NOTE: float logf/sincosf: initial values need no double precision, and VGG's
             * 100M+ weights would take seconds in double. u1 > 0 always (the uniforms are open). */
            float radius = (float)c->normal_std * sqrtf(-2.0f * logf(u1)), angle = 6.2831853f * u2;
            first = radius * cosf(angle);
            second = radius * sinf(angle);
        } else {
            first = (float)((2.0 * u1 - 1.0) * c->bound);
            second = (float)((2.0 * u2 - 1.0) * c->bound);
        }
        c->data[i] = first;
        if (i + 1 < c->numel) c->data[i + 1] = second;
    }
}

/* Fills a parameter: uniform in [-bound, bound] when normal_std == 0, else normal. */
static void init_param(tg_builder *b, tg_node_id id, double bound, double normal_std)
{
    tg_tensor *t = &b->graph->nodes[id].value;
    init_ctx c = {t->data, tg_tensor_numel(t), b->seed ^ (0xd1b54a32d192ed03ull * ++b->counter), bound, normal_std};
    tg_parallel_for((c.numel + 1) / 2, 4096, init_range, &c);
}

static void fill_param(tg_builder *b, tg_node_id id, float value)
{
    tg_tensor *t = &b->graph->nodes[id].value;
    float *data = t->data;
    for (int64_t i = 0; i < tg_tensor_numel(t); i++) data[i] = value;
}

static tg_node_id add_param(tg_builder *b, const char *layer, const char *what, int ndim, const int64_t *shape)
{
    if (b->status != TG_STATUS_OK) return -1;
    char name[256];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    tg_node_id id;
    tg_status status = tg_graph_param(b->graph, name, ndim, shape, 1, &id);
    return status == TG_STATUS_OK ? id : fail(b, status);
}

int64_t tg_build_dim(const tg_builder *b, tg_node_id x, int dim)
{
    if (x < 0 || x >= b->graph->n_nodes) return 0;
    const tg_tensor *v = &b->graph->nodes[x].value;
    return dim < v->ndim ? v->shape[dim] : 0;
}

tg_node_id tg_build_op(tg_builder *b, const char *op, const tg_node_id *in, int n_in, int n_attrs,
                       const char *const *keys, const double *values)
{
    if (b->status != TG_STATUS_OK) return -1;
    const tg_op_def *def = tg_op_find(op);
    if (!def) return fail(b, tg_error(TG_STATUS_INTERNAL, "model builder: no op named '%s'", op));
    _Alignas(64) unsigned char attrs[TG_MAX_ATTR_BYTES];
    tg_attrs_set_defaults(def, attrs);
    for (int i = 0; i < n_attrs; i++) {
        tg_status status = tg_attrs_set_float(def, attrs, keys[i], values[i]);
        if (status != TG_STATUS_OK) return fail(b, status);
    }
    tg_node_id id;
    tg_status status = tg_graph_op(b->graph, def, in, n_in, attrs, &id);
    return status == TG_STATUS_OK ? id : fail(b, status);
}

tg_node_id tg_build_unary(tg_builder *b, const char *op, tg_node_id x) { return tg_build_op(b, op, &x, 1, 0, NULL, NULL); }

tg_node_id tg_build_binary(tg_builder *b, const char *op, tg_node_id x, tg_node_id y)
{
    tg_node_id in[2] = {x, y};
    return tg_build_op(b, op, in, 2, 0, NULL, NULL);
}

tg_node_id tg_build_conv2d(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels, int64_t kernel,
                           int64_t stride, int64_t padding, int64_t groups, int bias)
{
    return tg_build_conv2d_dilated(b, name, x, out_channels, kernel, stride, padding, 1, groups, bias);
}

tg_node_id tg_build_conv2d_dilated(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels, int64_t kernel,
                                   int64_t stride, int64_t padding, int64_t dilation, int64_t groups, int bias)
{
    int64_t in_channels = tg_build_dim(b, x, 1);
    int64_t wshape[4] = {out_channels, groups ? in_channels / groups : 0, kernel, kernel};
    tg_node_id w = add_param(b, name, "weight", 4, wshape);
    tg_node_id bias_id = bias ? add_param(b, name, "bias", 1, &out_channels) : -1;
    if (b->status != TG_STATUS_OK) return -1;
    /* torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") */
    init_param(b, w, 0.0, sqrt(2.0 / (double)(out_channels / groups * kernel * kernel)));
    if (bias) init_param(b, bias_id, 1.0 / sqrt((double)(wshape[1] * kernel * kernel)), 0.0);
    tg_node_id in[3] = {x, w, bias_id};
    static const char *const keys[] = {"stride", "padding", "groups", "dilation"};
    double values[4] = {(double)stride, (double)padding, (double)groups, (double)dilation};
    return tg_build_op(b, "conv2d", in, 3, 4, keys, values);
}

tg_node_id tg_build_conv_transpose2d(tg_builder *b, const char *name, tg_node_id x, int64_t out_channels,
                                     int64_t kernel, int64_t stride, int bias)
{
    int64_t in_channels = tg_build_dim(b, x, 1);
    int64_t wshape[4] = {in_channels, out_channels, kernel, kernel};
    tg_node_id w = add_param(b, name, "weight", 4, wshape);
    tg_node_id bias_id = bias ? add_param(b, name, "bias", 1, &out_channels) : -1;
    if (b->status != TG_STATUS_OK) return -1;
    /* PyTorch's ConvTranspose2d default: kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)) with
     * fan_in = weight.size(1) * k * k (out_channels * k * k for a transposed weight) */
    double bound = 1.0 / sqrt((double)(out_channels * kernel * kernel));
    init_param(b, w, bound, 0.0);
    if (bias) init_param(b, bias_id, bound, 0.0);
    tg_node_id in[3] = {x, w, bias_id};
    static const char *const keys[] = {"stride"};
    double values[1] = {(double)stride};
    return tg_build_op(b, "conv_transpose2d", in, 3, 1, keys, values);
}

/* The batchnorm parameters and buffers under `name`, then the op `op` over them. */
static tg_node_id build_batchnorm_op(tg_builder *b, const char *op, const char *name, tg_node_id x, double eps,
                                     double momentum)
{
    int64_t channels = tg_build_dim(b, x, 1);
    tg_node_id w = add_param(b, name, "weight", 1, &channels);
    tg_node_id bias = add_param(b, name, "bias", 1, &channels);
    if (b->status != TG_STATUS_OK) return -1;
    char mean_name[256], var_name[256], count_name[256];
    snprintf(mean_name, sizeof mean_name, "%s.running_mean", name);
    snprintf(var_name, sizeof var_name, "%s.running_var", name);
    snprintf(count_name, sizeof count_name, "%s.num_batches_tracked", name);
    tg_node_id mean, var, count;
    tg_status status = tg_graph_buffer(b->graph, mean_name, TG_DTYPE_F32, 1, &channels, &mean);
    if (status == TG_STATUS_OK) status = tg_graph_buffer(b->graph, var_name, TG_DTYPE_F32, 1, &channels, &var);
    if (status == TG_STATUS_OK) status = tg_graph_buffer(b->graph, count_name, TG_DTYPE_I64, 0, NULL, &count);
    if (status != TG_STATUS_OK) return fail(b, status);
    fill_param(b, w, 1.0f);
    fill_param(b, var, 1.0f);
    tg_node_id in[5] = {x, w, bias, mean, var};
    static const char *const keys[] = {"eps", "momentum"};
    double values[2] = {eps, momentum};
    return tg_build_op(b, op, in, 5, 2, keys, values);
}

tg_node_id tg_build_batchnorm2d(tg_builder *b, const char *name, tg_node_id x, double eps, double momentum)
{
    return build_batchnorm_op(b, "batchnorm2d", name, x, eps, momentum);
}

tg_node_id tg_build_batchnorm2d_silu(tg_builder *b, const char *name, tg_node_id x, double eps, double momentum)
{
    return build_batchnorm_op(b, "batchnorm2d_silu", name, x, eps, momentum);
}

/* bound < 0: PyTorch's default init (uniform +-1/sqrt(in) for weight and bias);
 * otherwise the weight as tg_build_reinit takes (bound, normal_std) and a zero bias. */
static tg_node_id linear(tg_builder *b, const char *name, tg_node_id x, int64_t out_features, int bias, double bound,
                         double normal_std)
{
    const tg_tensor *v = x >= 0 && x < b->graph->n_nodes ? &b->graph->nodes[x].value : NULL;
    int64_t in_features = v && v->ndim ? v->shape[v->ndim - 1] : 0;
    int64_t wshape[2] = {out_features, in_features};
    tg_node_id w = add_param(b, name, "weight", 2, wshape);
    tg_node_id bias_id = bias ? add_param(b, name, "bias", 1, &out_features) : -1;
    if (b->status != TG_STATUS_OK) return -1;
    if (bound < 0.0) {
        double fan_in_bound = 1.0 / sqrt((double)(in_features ? in_features : 1));
        init_param(b, w, fan_in_bound, 0.0);
        if (bias) init_param(b, bias_id, fan_in_bound, 0.0);
    } else if (bound > 0.0 || normal_std > 0.0) {
        init_param(b, w, bound, normal_std);
    }
    tg_node_id in[3] = {x, w, bias_id};
    return tg_build_op(b, "linear", in, 3, 0, NULL, NULL);
}

tg_node_id tg_build_linear(tg_builder *b, const char *name, tg_node_id x, int64_t out_features, int bias)
{
    return linear(b, name, x, out_features, bias, -1.0, 0.0);
}

tg_node_id tg_build_linear_init(tg_builder *b, const char *name, tg_node_id x, int64_t out_features, double bound,
                                double normal_std)
{
    return linear(b, name, x, out_features, 1, bound, normal_std);
}

void tg_build_reinit(tg_builder *b, const char *name, double bound, double normal_std)
{
    if (b->status != TG_STATUS_OK) return;
    tg_node_id id = tg_graph_find(b->graph, name);
    if (id < 0 || b->graph->nodes[id].kind != TG_NODE_KIND_PARAM) {
        fail(b, tg_error(TG_STATUS_INTERNAL, "model builder: no parameter named '%s' to initialise", name));
        return;
    }
    if (normal_std > 0.0 || bound > 0.0) init_param(b, id, bound, normal_std);
    else fill_param(b, id, 0.0f);
}

int64_t tg_make_divisible(double value, int64_t divisor)
{
    int64_t rounded = (int64_t)(value + (double)divisor / 2.0) / divisor * divisor;
    if (rounded < divisor) rounded = divisor;
    if ((double)rounded < 0.9 * value) rounded += divisor;
    return rounded;
}

tg_node_id tg_build_max_pool2d(tg_builder *b, tg_node_id x, int64_t kernel, int64_t stride, int64_t padding)
{
    static const char *const keys[] = {"kernel_size", "stride", "padding"};
    double values[3] = {(double)kernel, (double)stride, (double)padding};
    return tg_build_op(b, "max_pool2d", &x, 1, 3, keys, values);
}

tg_node_id tg_build_avg_pool2d(tg_builder *b, tg_node_id x, int64_t kernel, int64_t stride)
{
    static const char *const keys[] = {"kernel_size", "stride"};
    double values[2] = {(double)kernel, (double)stride};
    return tg_build_op(b, "avg_pool2d", &x, 1, 2, keys, values);
}

tg_node_id tg_build_adaptive_avg_pool2d(tg_builder *b, tg_node_id x, int64_t output_size)
{
    static const char *const keys[] = {"output_size"};
    double values[1] = {(double)output_size};
    return tg_build_op(b, "adaptive_avg_pool2d", &x, 1, 1, keys, values);
}

tg_node_id tg_build_dropout(tg_builder *b, tg_node_id x, double p)
{
    if (p <= 0.0) return x;
    static const char *const keys[] = {"p"};
    return tg_build_op(b, "dropout", &x, 1, 1, keys, &p);
}
