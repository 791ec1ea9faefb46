"""The five stages, one a module: each ``run(ctx: StageContext) -> StageResult``.

The stage that writes a file owns its reader (``index.load_index``, ``split.load_splits``); heavy
modules (Keras, TensorFlow) are imported inside the stage functions.
"""
