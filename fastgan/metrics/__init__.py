"""Sample quality: FID, KID, IS, precision/recall/density/coverage, and checks that need
no downloaded weights (generated digits, 2-D mixtures).

    from fastgan import metrics
    metrics.fid_from_features(real_features, fake_features)
    metrics.Evaluator(["fid", "kid"], data="celeba64.fgimg", resolution=64, channels=3)(generator)

Submodules: fid (Fréchet distance, eigh-based matrix square root in float64), kid, inception_score,
prdc (k-NN precision/recall, density/coverage), inception (the FID Inception-v3 and feature
extraction; weights from a file you supply), digits (a classifier of the built-in digits),
evaluate (samples -> metrics, cached reference statistics, `fastgan eval`). The names below
are imported on first use, so `import fastgan.metrics` stays light.
"""
import importlib

_EXPORTS = {
    "feature_stats": "fid", "fid_from_stats": "fid", "fid_from_features": "fid",
    "kid_from_features": "kid", "mmd2_unbiased": "kid",
    "inception_score": "inception_score",
    "precision_recall": "prdc",
    "FIDInceptionV3": "inception", "load_inception": "inception", "inception_features": "inception",
    "preprocess": "inception", "random_inception": "inception",
    "DigitClassifier": "digits", "digit_classifier": "digits", "digit_metrics": "digits",
    "Evaluator": "evaluate", "METRICS": "evaluate", "PRIMARY": "evaluate", "generate": "evaluate",
    "reference_stats": "evaluate", "load_stats": "evaluate", "parse_metrics": "evaluate",
}
__all__ = sorted(_EXPORTS) + ["mixture_coverage"]

# inception_score is also the name of its submodule: once that is imported (evaluate does), the
# package attribute is the module and __getattr__ is never asked, so the function is bound here
# (its module imports only torch).
from fastgan.metrics.inception_score import inception_score  # noqa: E402


def __getattr__(name):
    if name == "mixture_coverage":  # mode coverage on the 2-D mixtures lives with the data
        from fastgan.data.toy import coverage
        return coverage
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fastgan.metrics.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fastgan.metrics' has no attribute {name!r}")


def __dir__():
    return __all__
