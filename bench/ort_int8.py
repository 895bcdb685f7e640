"""onnxruntime side of trugrade/bench/int8.py: the test accuracy of a QDQ ONNX export.

  ort_int8.py MODEL.onnx IMAGES.npy LABELS.npy

IMAGES.npy holds the model's prepared inputs (float32 [N, C, H, W], already resized and
normalised by trugrade), LABELS.npy the int labels [N]. Prints one JSON line:
{"onnxruntime_int8_accuracy": ...}."""
import json
import sys

import numpy as np
import onnxruntime


def main():
    model, images, labels = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: images[s:s + 500]})[0] for s in range(0, len(images), 500)])
    print(json.dumps({"onnxruntime_int8_accuracy": float((logits.argmax(1) == labels).mean())}))


if __name__ == "__main__":
    main()
