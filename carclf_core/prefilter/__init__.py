"""The prefilter's reusable parts: the pure rule (``rule``), the stored scores (``scores``: no
TensorFlow, the dashboard imports it) and the ImageNet classifiers (``classifiers``). The stage that
runs them is :mod:`carclf_core.stages.prefilter`."""
