/* op_list.h: the op table, one row per op: TG_OP(name) registers tg_op_<name>,
 * defined in the family file beside its kernels. Included by registry.c only. */
TG_OP(relu)
TG_OP(add)
/* linalg (linalg.c) */
TG_OP(linear)
TG_OP(matmul)
/* nn family (norm.c, pool.c, upsample.c, loss.c) */
TG_OP(batchnorm2d)
TG_OP(layernorm)
TG_OP(groupnorm)
TG_OP(max_pool2d)
TG_OP(avg_pool2d)
TG_OP(adaptive_avg_pool2d)
TG_OP(global_avg_pool)
TG_OP(upsample_nearest)
TG_OP(upsample_bilinear)
TG_OP(mse_loss)
TG_OP(l1_loss)
TG_OP(smooth_l1_loss)
TG_OP(binary_cross_entropy_with_logits)
TG_OP(sigmoid_focal_loss)
TG_OP(cross_entropy)
TG_OP(dice_loss)
