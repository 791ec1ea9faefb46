"""Bad data: every refusal names the file or key, and the run goes on where that makes sense."""

import os

import pytest

from carclf_core import config as config_mod
from carclf_core.runs import create_run
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_all

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
    assert failure.stage == "split" and "1 class(es) left after filtering (need at least 2)" in failure.error
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission bits")
def test_unreadable_file_is_rejected(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 6})
    victim = next(data.iterdir())
    victim.chmod(0)
    status, run, events = _run(tmp_path, data, "split.min_per_class=3")
    rejected = {e.file: e.message for e in events if e.kind == "log" and e.file}
    assert rejected[victim.name].startswith("rejected: unreadable")


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
