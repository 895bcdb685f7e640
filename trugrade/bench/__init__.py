"""trugrade.bench: benchmarks printed side by side with PyTorch, as ratios.

`python -m trugrade.bench SECTION [OPTIONS]` (`make bench` runs ops, data,
train --compare and predict). Sections: ops (gemm, conv, per-op overhead), validate, data
(loading), train (full training steps of a zoo architecture; --compare the standard
set, U-Net-SE on 11-band 256x256 tiles included), predict (segmentation inference per
tile, `trugrade predict`'s path), fashion (Fashion-MNIST end to end, several minutes),
int8 (post-training quantization of the Fashion-MNIST recipe: accuracy drop and int8
speed-up, trugrade against itself). Each section module here times
trugrade and asks its PyTorch twin in the repository's bench/ folder (run in a
subprocess with PyTorch's best environment: OPENBLAS_CORETYPE unset,
OPENBLAS_NUM_THREADS=1, 2 threads, channels_last) for the same measurement.
Nothing here imports torch.
"""
