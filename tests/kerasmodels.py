"""A small Keras CNN built and trained in seconds, shared by the Keras importer and TFLite tests."""

from __future__ import annotations

import functools

import numpy as np

IMAGE = (16, 16, 3)  # NHWC, as Keras takes images
CLASSES = 4


def quadrant_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is the brightest quadrant (learnable in one epoch), float32 NHWC."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *IMAGE)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, s * 8:(s + 1) * 8, :] += 3.0
    return x, y


@functools.cache
def small_cnn(seed: int = 0, train: bool = True):  # -> keras.Model
    """Built (and trained) once per process and seed; callers must not modify it."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(IMAGE, name="image"),
            keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name="small_cnn",
    )
    if train:
        x, y = quadrant_images(256, seed=seed)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=32, epochs=6, verbose=0, shuffle=False)
    return model
