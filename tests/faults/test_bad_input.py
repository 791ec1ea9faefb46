"""Bad data: every refusal names the file or key, and the run goes on where that makes sense."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core.eventlog import read_events
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_all
from carclf_core.runs import create_run

from ..conftest import jpeg_bytes, make_dataset


def _run(tmp_path, data, *overrides):
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off",
                                    *overrides])
    run = create_run(config)
    seen = []
    status = run_all(StageContext(config=config, run=run, emit=seen.append), ["index", "split"])
    return status, run, seen


def _failure(events):
    return next(e for e in events if e.kind == "stage_failed")


def test_empty_folder_fails_the_index_naming_the_key(tmp_path):
    (tmp_path / "empty").mkdir()
    status, run, events = _run(tmp_path, tmp_path / "empty")
    assert status == "failed"
    assert _failure(events).error.startswith("data.dir: no usable images in")


def test_fewer_than_two_classes_left(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 12, ("Kia", "Rio"): 4})
    status, run, events = _run(tmp_path, data, "split.min_per_class=5")
    assert status == "failed"
    failure = _failure(events)
    assert failure.stage == "split" and "1 class left after filtering (need at least 2)" in failure.error
    warnings = [e.message for e in events if e.kind == "log" and e.level == "warning"]
    assert "class 'Kia_Rio' dropped: 4 images < split.min_per_class 5" in warnings


def test_every_rejected_file_is_named_in_the_log(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 6})
    (data / "BMW_X5_only_six_fields_here_x.jpg").write_bytes(jpeg_bytes((1, 2, 3)))
    (data / "Audi_A4_2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr_zero.jpg").write_bytes(b"")
    status, run, events = _run(tmp_path, data, "split.min_per_class=3")
    assert status == "done"
    rejected = {e.file: e.message for e in events if e.kind == "log" and e.file}
    assert rejected["Audi_A4_2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr_zero.jpg"] == "rejected: empty file"
    assert rejected["BMW_X5_only_six_fields_here_x.jpg"].startswith("rejected: file name: expected 17 fields")


NOBODY = 65534


def _as_unprivileged(command: list[str]) -> list[str]:
    """``command`` run as nobody when the tests run as root (root reads files whatever their mode)."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop privileges to make a file unreadable")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def test_unreadable_file_and_folder_are_recorded_and_the_scan_finishes():
    """A real permission refusal: the index runs as an unprivileged user over a chmod-000 file and
    folder, records both with the reason and indexes the rest."""
    # tmp_path lives under /tmp/pytest-of-root (mode 700), which nobody cannot traverse
    base = Path(tempfile.mkdtemp(prefix="carclf-unreadable-", dir="/tmp"))
    try:
        base.chmod(0o755)
        data = make_dataset(base / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 6})
        victim = sorted(data.iterdir())[0]
        locked = data / "locked"
        locked.mkdir()
        (locked / victim.name.replace(".jpg", "x.jpg")).write_bytes(victim.read_bytes())
        victim.chmod(0)
        locked.chmod(0)
        work = base / "work"
        work.mkdir()
        if os.geteuid() == 0:
            os.chown(work, NOBODY, NOBODY)
        probe = subprocess.run(_as_unprivileged([sys.executable, "-c", "import carclf_tui.cli"]), cwd=work,
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"the unprivileged user cannot import carclf from this checkout: {probe.stderr[-300:]}")
        done = subprocess.run(_as_unprivileged([sys.executable, "-m", "carclf_tui.cli", "--plain", "--stage", "index",
                                                "--set", f"data.dir={data}", "--set", f"run.root={work / 'runs'}"]),
                              cwd=work, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": str(work)})
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        (run,) = (work / "runs").iterdir()
        index = pd.read_csv(run / "index" / "index.csv", keep_default_na=False)
        rows = {Path(p).name: (s, r) for p, s, r in zip(index["path"], index["status"], index["reason"], strict=True)}
        assert rows[victim.name] == ("rejected", "unreadable (Permission denied)")
        assert rows["locked"] == ("rejected", "unreadable folder (Permission denied)")
        assert sum(status == "ok" for status, _ in rows.values()) == 11
        logged = {e.file: e.message for e in read_events(run / "events.jsonl").events if e.kind == "log" and e.file}
        assert logged[victim.name] == "rejected: unreadable (Permission denied)"
        assert "11 images in 2 classes, 2 rejected" in done.stdout + done.stderr
    finally:
        for folder in (base / "data" / "locked",):
            if folder.exists():
                folder.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_image_deleted_after_the_split_is_left_out_by_name(tmp_path):
    """The training and test file lists skip a vanished file and say which (the tf.data pipeline's
    ignore_errors is only the last net, for files that changed rather than vanished)."""
    from carclf_core.stages.split import load_splits, split_files

    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 8, ("BMW", "X5"): 8})
    status, run, _ = _run(tmp_path, data, "split.min_per_class=3")
    assert status == "done"
    splits, _ = load_splits(run)
    victim = splits[splits["split"] == "test"]["path"].iloc[0]
    (data / victim).unlink()
    logged = []
    ctx = StageContext(config=run.load_config(), run=run, emit=logged.append)
    paths, labels = split_files(splits, "test", str(data), ctx)
    assert len(paths) == len(labels) == (splits["split"] == "test").sum() - 1
    assert str(data / victim) not in paths
    assert [(e.message, e.file) for e in logged] == [("test image missing since indexing, left out", victim)]


def test_failure_messages_say_what_to_do():
    import errno

    from carclf_core.registry import failure_message

    missing = ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    assert failure_message(missing).startswith("TensorFlow is not installed: pip install -e '.[cpu]'")
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/train/last.keras")
    assert failure_message(full).startswith("disk full writing /runs/x/train/last.keras (No space left")
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as exc:
            raise RuntimeError("Unable to synchronously write data") from exc
    except RuntimeError as wrapped:
        assert failure_message(wrapped).startswith("disk full (File too large)")
    assert failure_message(ValueError("boom")) == "ValueError: boom"


@pytest.mark.parametrize("stage, overrides, key", [
    ("train", ["split.min_per_class=3", "train.backbone=mobilenetv3small", "train.weights=imagenet"], "train.weights"),
    ("prefilter", ["prefilter.mode=filter", "prefilter.model=resnet50v2", "prefilter.weights=imagenet"],
     "prefilter.weights"),
])
def test_offline_imagenet_weights_fail_the_stage_within_seconds(tmp_path, stage, overrides, key):
    """No network here: the stage must fail fast naming the key, not hang on retries (measured: 1.0 s
    from the stage's start for the prefilter, 1.5 s for train; 10 s leaves room for a loaded machine).
    TensorFlow's own import, a fixed few seconds for any stage, happens before the clock starts."""
    import tensorflow  # noqa: F401

    from carclf_core.checkpoint import read_state
    from carclf_core.prefilter.classifiers import KERAS_RESNET_WEIGHTS

    keras_models = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if any(keras_models.glob("*imagenet*")) or (keras_models / KERAS_RESNET_WEIGHTS).exists():
        pytest.skip(f"ImageNet weights are cached in {keras_models}: nothing would be downloaded")
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 6})
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off",
                                    "input.height=32", "input.width=48", *overrides])
    run = create_run(config)
    seen = []
    names = ["index", "split", "train"] if stage == "train" else ["index", "prefilter"]
    status = run_all(StageContext(config=config, run=run, emit=seen.append), names)
    assert status == "failed"
    started = next(e for e in seen if e.kind == "stage_started" and e.stage == stage)
    failed = _failure(seen)
    assert failed.stage == stage and failed.error.startswith(f"{key}: cannot download"), failed.error
    assert failed.t - started.t < 10, f"{stage} took {failed.t - started.t:.1f} s to fail"
    assert run.read_state()["stages"][stage]["status"] == "failed"
    if stage == "train":
        assert read_state(run.train_dir) is None  # no epoch was recorded
