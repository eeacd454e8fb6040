"""Headless plotting with atomic saves: the one place that touches matplotlib's backend."""

import os

from keras_sgn.io_utils import atomic_write_bytes


def new_figure(nrows=1, ncols=1, figsize=(6.4, 4.2), **kwargs):
    """`(figure, axes)` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=figsize, **kwargs)


def model_title(model):
    """How a figure's title names a model: a zoo name as is, a saved model by
    its file name, a run's `RUN_DIR/model.keras` by the run folder's name."""
    model = str(model)
    if not model.endswith(".keras"):
        return model
    folder, filename = os.path.split(os.path.normpath(model))
    return os.path.basename(folder) if filename == "model.keras" and folder else filename


def save_figure(fig, path, dpi=120):
    """Write `fig` as a PNG at `path` atomically (a reader never sees half an
    image), then close it to free its memory."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
