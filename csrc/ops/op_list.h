/* op_list.h: the op table, one row per op: TG_OP(name) registers tg_op_<name>,
 * defined in the family file beside its kernels. Included by registry.c only. */
TG_OP(relu)
TG_OP(add)
/* convolution (conv.c, conv_depthwise.c) */
TG_OP(conv2d)
TG_OP(conv_transpose2d)
