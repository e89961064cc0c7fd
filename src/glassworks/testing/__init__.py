"""Checks shared by the tests of every classifier flavour (our encoder, Hugging Face encoders)
and by benchmarks: a model users load means what it says; a chart has the bars it should.

Shape checks ("two columns that sum to 1") pass for a model whose probability columns are
swapped. These compare a pyfunc's (or a scoring server's, or a registered model's) output with
the in-process ``predict_proba`` of the same weights, column by column in label order, and check
that a clearly positive sentence of the synthetic task scores higher on ``positive`` than a
clearly negative one.

Submodules: :mod:`glassworks.testing.hf` (``tiny_bert_dir``: a tiny random BERT on disk for the
Hugging Face path), :mod:`glassworks.testing.html` (``parse_html``: a written page's tags, title
and text, for the browser tests). Helpers that tests and benchmarks share; never imported by the library itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glassworks.data.synthetic import NEGATIVE, POSITIVE

# Sentences in the synthetic task's own grammar (subject, verb, evidence word): any model trained
# on it to a useful accuracy gets each pair right.
CLEARLY_POSITIVE: tuple[str, ...] = tuple(f"the movie was {w}" for w in POSITIVE[:4])
CLEARLY_NEGATIVE: tuple[str, ...] = tuple(f"the movie was {w}" for w in NEGATIVE[:4])
MEANING_TEXTS: tuple[str, ...] = CLEARLY_POSITIVE + CLEARLY_NEGATIVE


def prediction_frame(predictions: Any) -> pd.DataFrame:
    """A DataFrame of per-label scores from what a pyfunc returns (a DataFrame) or what
    ``mlflow models serve`` answers (``{"predictions": [{label: p, ...}, ...]}``)."""
    if isinstance(predictions, pd.DataFrame):
        return predictions
    if isinstance(predictions, Mapping) and "predictions" in predictions:
        predictions = predictions["predictions"]
    if isinstance(predictions, Sequence) and predictions and isinstance(predictions[0], Mapping):
        return pd.DataFrame.from_records(list(predictions), columns=list(predictions[0]))
    raise TypeError(f"prediction_frame: cannot read label scores from a {type(predictions).__name__}")


def assert_columns_follow_label_order(predictions: Any, reference: np.ndarray, label_names: Sequence[str],
                                      atol: float = 1e-5) -> None:
    """``predictions`` (N rows) has exactly the columns ``label_names``, in that order, and column
    ``label_names[c]`` equals ``reference[:, c]``: the probabilities ``predict_proba`` computes
    in-process for the same texts (N, C)."""
    frame = prediction_frame(predictions)
    if list(frame.columns) != list(label_names):
        raise AssertionError(f"prediction columns {list(frame.columns)} != label order {list(label_names)}")
    reference = np.asarray(reference, dtype=np.float64)
    if frame.shape != reference.shape:
        raise AssertionError(f"predictions have shape {frame.shape}, predict_proba {reference.shape}")
    for c, name in enumerate(label_names):
        got = frame[name].to_numpy(dtype=np.float64)
        if not np.allclose(got, reference[:, c], atol=atol):
            raise AssertionError(f"column {name!r} = {got.round(6).tolist()} but predict_proba's column {c} "
                                 f"({name!r}) = {reference[:, c].round(6).tolist()}")


def assert_positive_scores_higher(predict: Callable[[list[str]], Any], positive_label: str = "positive",
                                  positive_texts: Sequence[str] = CLEARLY_POSITIVE,
                                  negative_texts: Sequence[str] = CLEARLY_NEGATIVE) -> pd.DataFrame:
    """Every clearly positive text scores higher on ``positive_label`` than its clearly negative
    counterpart (pairs in order). ``predict`` maps texts to label scores (see prediction_frame);
    returns the scores of ``positive_texts + negative_texts``."""
    if len(positive_texts) != len(negative_texts) or not positive_texts:
        raise ValueError("assert_positive_scores_higher: give as many negative texts as positive ones (>= 1)")
    frame = prediction_frame(predict([*positive_texts, *negative_texts]))
    if positive_label not in frame.columns:
        raise AssertionError(f"no {positive_label!r} column in predictions {list(frame.columns)}")
    scores = frame[positive_label].to_numpy(dtype=np.float64)
    n = len(positive_texts)
    wrong = [(positive_texts[i], scores[i], negative_texts[i], scores[n + i])
             for i in range(n) if not scores[i] > scores[n + i]]
    if wrong:
        raise AssertionError(f"P({positive_label}) is not higher for the positive text of "
                             f"{len(wrong)}/{n} pairs: {wrong}")
    return frame


# The bar colour of glassworks.explain.plots.global_importance_png.
GLOBAL_IMPORTANCE_BAR = (214, 39, 40)  # #d62728


def png_bars(path: str | Path, colour: tuple[int, int, int], tolerance: int = 6) -> tuple[tuple[int, int], int]:
    """((width, height) in pixels, number of separate horizontal bands holding ``colour``) of a
    PNG: a horizontal bar chart's bar count, 0 for a chart without bars."""
    from matplotlib.image import imread

    rgb = (imread(str(path))[..., :3] * 255).round().astype(int)  # (H, W, 3)
    rows = (np.abs(rgb - np.asarray(colour)).sum(axis=-1) <= tolerance).any(axis=1)  # (H,) rows with the colour
    bands = int(rows[0]) + int(np.sum(rows[1:] & ~rows[:-1]))
    return (rgb.shape[1], rgb.shape[0]), bands
