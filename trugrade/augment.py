"""trugrade.augment: image augmentation applied consistently to an image, its mask and its boxes.

The work is done in C (csrc/data/augment*.c); this module only converts arguments.

    pipeline = trugrade.augment.Pipeline([
        {"name": "random_resized_crop", "size": 224},
        {"name": "hflip", "p": 0.5},
        {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4},
        {"name": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    ])
    out = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=0, epoch=3, index=17)
    out["image"]   # float32 (C, H', W')

A transform is a dict with "name" and its parameters (inline, or under "params"), a
(name, params) pair, or a bare name. `transforms()` lists every name and parameter.
Images are (C, H, W) (a 2-D array is taken as one channel) uint8, uint16 or float32;
masks (H, W) class indices; boxes [N, 4] (x1, y1, x2, y2) in pixels. The result is a
dict: image (float32 (C, H', W'), in the source's value scale until normalize),
mask, boxes (float32 [M, 4], M <= N), labels (int64 [M]) and transform (the 2x3
map from input to output pixel coordinates, e.g. letterbox's scale and offsets).

Every random draw comes from (seed, epoch, index): the same numbers give the same
result, on any thread. Colour transforms treat float32 images as 0..1 (they clamp
there); saturation and hue only apply to 3-channel images (other channel counts skip
them); contrast uses the grayscale mean for 3 channels and the mean of every value
otherwise. Resizing is bilinear without antialiasing.
"""
import numpy as np

from . import _C
from .errors import ConfigError

__all__ = ["Pipeline", "preview", "transforms", "multiscale_size"]


def transforms():
    """{name: [parameter names]} of every transform."""
    return _C.augment_transforms()


def multiscale_size(sizes, seed, batch_index):
    """The multi-scale training size of batch `batch_index`: one of `sizes`, drawn from (seed, batch_index)."""
    return _C.augment_multiscale_size(list(sizes), int(seed), int(batch_index))


def _transform_entry(position, transform):
    if isinstance(transform, str):
        return transform, {}
    if isinstance(transform, (tuple, list)) and len(transform) == 2 and isinstance(transform[0], str):
        return transform[0], dict(transform[1] or {})
    if not isinstance(transform, dict):
        raise ConfigError(f"transform {position}: expected a dict with 'name', got {type(transform).__name__}")
    params = dict(transform)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"transform {position}: a transform needs a 'name' (see trugrade.augment.transforms())")
    params.update(params.pop("params", None) or {})
    if name == "random_erasing" and isinstance(params.get("value"), str):
        if params["value"] != "random":
            raise ConfigError(f"transform {position} (random_erasing): value must be a number or 'random', "
                              f"got {params['value']!r}")
        params["value"] = 0.0
        params["random_value"] = True
    return name, params


def _image(image):
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def _sample(image, mask=None, boxes=None, labels=None):
    image = _image(image)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == np.bool_:
            mask = mask.astype(np.uint8)
        elif mask.dtype not in (np.uint8, np.int32, np.int64):
            mask = mask.astype(np.int64)
        mask = np.ascontiguousarray(mask)
    if boxes is not None:
        boxes = np.ascontiguousarray(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        if labels is None:
            labels = np.zeros(len(boxes), dtype=np.int64)
        labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64).reshape(-1))
    elif labels is not None:
        raise ValueError("labels were given without boxes")
    return (image, mask, boxes, labels)


def _mosaic_samples(mosaic):
    if mosaic is None:
        return []
    if len(mosaic) != 3:
        raise ValueError(f"mosaic takes the 3 other samples (dicts with image, mask, boxes, labels), got {len(mosaic)}")
    return [_sample(**m) if isinstance(m, dict) else _sample(m) for m in mosaic]


def _result(raw):
    out = {key: (np.asarray(value) if value is not None and key != "transform" else value)
           for key, value in raw.items()}
    out["transform"] = np.array(raw["transform"], dtype=np.float64)
    return out


class Pipeline:
    """An ordered list of transforms, validated once; call it on one sample.

    min_box_area_fraction: a box keeping less of its area after a geometric transform
    is dropped (boxes left with no area always are). mask_fill: the mask value where
    the output has no source (padding, affine borders).
    """

    def __init__(self, transforms, min_box_area_fraction=0.0, mask_fill=0):
        if isinstance(transforms, Pipeline):
            transforms = transforms.transforms
        self.transforms = list(transforms)
        entries = [_transform_entry(i, t) for i, t in enumerate(self.transforms)]
        self._pipeline = _C.augment_pipeline(entries, float(min_box_area_fraction), float(mask_fill))
        self._mosaic = bool(entries) and entries[0][0] == "mosaic"

    def __repr__(self):
        return f"trugrade.augment.Pipeline({self.transforms!r})"

    def __call__(self, image, mask=None, boxes=None, labels=None, seed=0, epoch=0, index=0, mosaic=None):
        """Augments one sample; `mosaic` gives the 3 other samples when the pipeline starts with mosaic."""
        samples = [_sample(image, mask, boxes, labels)] + _mosaic_samples(mosaic)
        if self._mosaic and len(samples) != 4:
            raise ValueError("this pipeline starts with mosaic: pass mosaic=[3 other samples]")
        return _result(_C.augment_apply(self._pipeline, samples, seed=int(seed), epoch=int(epoch), index=int(index)))

    def many(self, items, seed=0, epoch=0, first_index=0):
        """Augments items (lists of sample dicts) in parallel on trugrade's threads; item i uses index first_index + i."""
        batch = [[_sample(**s) if isinstance(s, dict) else _sample(s) for s in item] for item in items]
        raw = _C.augment_apply_many(self._pipeline, batch, seed=int(seed), epoch=int(epoch),
                                    first_index=int(first_index))
        return [_result(r) for r in raw]

    def output_shape(self, shape, seed=0, epoch=0, index=0):
        """The (C, H, W) result shape for an input of `shape` under these draws."""
        c, h, w = shape
        return _C.augment_output_shape(self._pipeline, int(c), int(h), int(w), int(seed), int(epoch), int(index))


def preview(image, pipeline, n=8, mask=None, boxes=None, labels=None, seed=0):
    """n augmented versions of one sample (indices 0..n-1): a list of dicts with image, mask, boxes, labels.

    For a notebook grid, e.g. plt.imshow(out["image"].transpose(1, 2, 0) / 255) before normalize.
    """
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline(pipeline)
    sample = {"image": image, "mask": mask, "boxes": boxes, "labels": labels}
    items = [[sample] * (4 if pipeline._mosaic else 1) for _ in range(int(n))]
    return pipeline.many(items, seed=seed)
