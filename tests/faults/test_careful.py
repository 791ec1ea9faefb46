"""Every command as careful as the dashboard: ``predict`` and ``explain`` given hostile names and
labels, decompression bombs, odd arguments; labels that look alike; a console that cannot encode;
files that follow the umask; symlinks where carclf writes; the pixel gate of every reader.

The commands run as users run them (the CLI in subprocesses) on a real exported Keras model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.cells import cell_len

from carclf_core import config as config_mod
from carclf_core.export import make_contract, write_export
from carclf_core.runs import create_run

from ..conftest import demo_subset, make_dataset
from .conftest import only_run, stage_status
from .test_hostile import CLEAR, TITLE, assert_nothing_raw

keras = pytest.importorskip("keras")

H, W = 48, 64
BIDI = "\u202eevil"
FILLER = "\u3164"
HOSTILE_CLASSES = [f"red{TITLE}", f"pl{BIDI}ain{FILLER}"]


def use(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``carclf-tui predict|explain ...`` in a subprocess, its output as bytes (what a terminal gets)."""
    return subprocess.run([*prefix, sys.executable, "-m", "carclf_tui.cli", *args], cwd=cwd, capture_output=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "80", **(env or {})})


def red_detector():
    from ..test_use import red_detector as build

    return build()


def picture(left: bool) -> np.ndarray:
    from ..test_use import picture as draw

    return draw(left)


def export_run(root: Path, classes: list[str], prefilter: dict | None = None):
    settings = {"run": {"root": str(root)}, "input": {"height": H, "width": W},
                "prefilter": prefilter or {"mode": "off"}}
    config = config_mod.from_dict(settings)
    run = create_run(config)
    contract = make_contract(run, config, classes, {"accuracy": 1.0, "images": 3})
    write_export(red_detector(), run, contract, savedmodel=False, tflite=False)
    return run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A run whose class names carry an escape sequence, a bidi override and a Hangul filler, and
    photos whose names carry escape sequences, a newline and 250 bytes."""
    tmp = tmp_path_factory.mktemp("careful")
    run = export_run(tmp / "runs", HOSTILE_CLASSES)
    photos = tmp / "photos"
    photos.mkdir()
    names = {f"title{TITLE}.png": True, f"clear{CLEAR}\nfake line.png": False, "x" * 246 + ".png": True}
    for name, left in names.items():
        Image.fromarray(picture(left)).save(photos / name)
    return dict(run=run, photos=photos, tmp=tmp, names=names)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A small PNG that declares ``width x height`` pixels: one IDAT of a zlib stream of zeros, so a
    decoder that believes the header allocates the whole picture (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(b"\0" * (3 * width + 1) * 16, 9)  # a few rows: the file stays small
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


# --- untrusted bytes: names and labels ------------------------------------------------------------


def test_predict_and_explain_show_names_and_labels_escaped(hostile, tmp_path):
    """An ESC sequence in a file name set the terminal's title, a newline split predict's table, bidi
    overrides in labels reached the terminal: every displayed string is escaped, one line a photo."""
    run, photos = hostile["run"], hostile["photos"]
    result = use("predict", str(run.path), str(photos), "--top-k", "2", cwd=tmp_path, env={"COLUMNS": "400"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out.decode(errors="replace")[-3000:]
    assert_nothing_raw(out, "predict's table")
    text = result.stdout.decode()
    assert BIDI not in text and FILLER not in text
    assert "red\\x1b]0;pwned-title\\x07" in text and "pl\\u202eevilain\\u3164" in text
    assert "clear\\x1b[2Jclear-marker⏎fake line.png" in text
    body = [line for line in text.splitlines()[1:] if line.strip()]
    assert len(body) == 3, text  # one line a photo: no name breaks a row

    explained = use("explain", str(run.path), str(photos / f"title{TITLE}.png"), "--no-show", cwd=tmp_path)
    out = explained.stdout + explained.stderr
    assert explained.returncode == 0, out.decode(errors="replace")[-3000:]
    assert_nothing_raw(out, "explain's output")
    assert "title\\x1b]0;pwned-title\\x07-occlusion.png" in explained.stdout.decode()
    assert (run.path / "explain" / f"title{TITLE}-gradcam.png").is_file()  # the file keeps the real name

    wrong = use("explain", str(run.path), str(photos / f"title{TITLE}.png"), "--class", f"x{TITLE}", cwd=tmp_path)
    assert wrong.returncode == 2 and b"is not one of the run's 2 classes" in wrong.stderr
    assert_nothing_raw(wrong.stdout + wrong.stderr, "explain's refusal")


def test_explain_of_a_photo_with_a_250_byte_name_saves_under_a_short_name(hostile, tmp_path):
    """`explain` of a photo with a 250-byte name failed "File name too long"."""
    run, photos = hostile["run"], hostile["photos"]
    long_photo = photos / ("x" * 246 + ".png")
    result = use("explain", str(run.path), str(long_photo), "--no-show", "--method", "occlusion", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    saved = sorted(p.name for p in (run.path / "explain").iterdir() if p.name.startswith("xxxx"))
    assert len(saved) == 2, saved  # the map and the panel of photo, map and colour scale
    for name, what in zip(saved, ("explained", "occlusion"), strict=True):
        assert len(os.fsencode(name)) <= 120
        assert re.fullmatch(rf"x{{89}}-[0-9a-f]{{10}}-{what}\.png", name), name
        assert str(run.path / "explain" / name) in result.stdout.decode()


def test_predict_top_k_must_be_one_or_more(hostile, tmp_path):
    """`--top-k 0` was a traceback and `--top-k -1` listed all classes but one."""
    for value in ("0", "-1", "many"):
        result = use("predict", str(hostile["run"].path), str(hostile["photos"]), "--top-k", value, cwd=tmp_path)
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert "Traceback" not in err and "argument --top-k: expected" in err, err
        assert result.stdout == b""


def test_predict_fits_80_columns_with_paths_as_given_and_cut_by_cells(tmp_path):
    """An absolute path wrapped over four lines of the 80-column table: paths are shown relative to
    the working folder, and a path too long for its column keeps its end, cut by terminal cells (a
    wide letter takes two)."""
    run = export_run(tmp_path / "runs", ["red", "plain"])
    deep = tmp_path / "photos" / ("名前の長いフォルダ" * 4) / "2024-holiday-photos-from-the-coast"
    deep.mkdir(parents=True)
    for name in ("left-車.png", "right.png"):
        Image.fromarray(picture(name.startswith("left"))).save(deep / name)
    os.mkfifo(tmp_path / "pipe.jpg")  # named on the command line: refused, never opened (it would block)
    result = use("predict", str(run.path), str(tmp_path / "photos"), "pipe.jpg", cwd=tmp_path)
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 4, text  # the header and one line a photo
    assert "skipped pipe.jpg: not a regular file (a named pipe (FIFO))" in result.stderr.decode()
    assert all(cell_len(line) <= 80 for line in lines), [cell_len(line) for line in lines]
    assert str(tmp_path) not in text  # shown relative to the working folder
    assert lines[1].startswith("pipe.jpg") and "not a regular file" in lines[1]
    assert "left-車.png" in lines[2] and "right.png" in lines[3]
    assert lines[2].lstrip().startswith("…") and "red" in lines[2]


# --- untrusted bytes: decompression bombs ---------------------------------------------------------


def _peak_rss_mb(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Run the CLI in a fresh child of a fresh Python and return the child's peak resident memory."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stdout.buffer.write(r.stdout); sys.stderr.buffer.write(r.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "carclf_tui.cli", *args],
                            cwd=cwd, capture_output=True, timeout=300, env={**os.environ, "COLUMNS": "80"})
    *_, last = result.stderr.decode().strip().splitlines()
    return int(last) / 1024, result


def test_a_png_declaring_196_megapixels_is_refused_by_header_by_predict_and_explain(tmp_path):
    """A 24 KB PNG declaring 14000x14000 pixels took 3.7 GB in predict: every reader refuses it by
    its header, naming it, and the peak memory stays that of a normal photo's run (the decode alone
    would be 588 MB of RGB bytes, 2.4 GB as float32)."""
    run = export_run(tmp_path / "runs", ["red", "plain"])
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 14000, 14000)
    assert bomb.stat().st_size < 64_000
    normal = tmp_path / "normal.png"
    Image.fromarray(picture(True)).save(normal)

    baseline_mb, base = _peak_rss_mb(["predict", str(run.path), str(normal)], tmp_path)
    assert base.returncode == 0, base.stderr.decode()[-2000:]
    peak_mb, result = _peak_rss_mb(["predict", str(run.path), str(bomb), str(normal), "--json"], tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rows = {Path(json.loads(line)["path"]).name: json.loads(line) for line in result.stdout.decode().splitlines()}
    assert rows["bomb.png"]["error"] == "too large (196,000,000 pixels, limit 40,000,000)"
    assert rows["normal.png"]["top"][0]["class"] == "red"
    assert "skipped" in result.stderr.decode() and "bomb.png" in result.stderr.decode()
    assert peak_mb < baseline_mb + 300, (peak_mb, baseline_mb)

    peak_mb, explained = _peak_rss_mb(["explain", str(run.path), str(bomb), "--no-show"], tmp_path)
    err = explained.stderr.decode()
    assert explained.returncode == 1, err
    assert f"carclf-tui explain: {bomb}: too large (196,000,000 pixels, limit 40,000,000)" in err
    assert "Traceback" not in err
    assert peak_mb < baseline_mb + 300, (peak_mb, baseline_mb)


def test_every_reader_goes_through_the_pixel_gate(tmp_path):
    """The index check, the Python reader, the tf.data pipelines (training and prefilter) and the
    gate itself refuse the same header with the same reason, before decoding."""
    from carclf_core import imagegate, images
    from carclf_core.config import InputConfig
    from carclf_core.inputs import make_dataset, make_prefilter_dataset

    bomb, wide = tmp_path / "bomb.png", tmp_path / "wide.png"
    _png_header_only(bomb, 14000, 14000)
    _png_header_only(wide, 8000, 5001)  # 40,008,000: just over the limit, under Pillow's own guard
    normal = tmp_path / "normal.png"
    Image.fromarray(picture(False)).save(normal)
    assert imagegate.check_pixels(bomb) == "too large (196,000,000 pixels, limit 40,000,000)"
    assert imagegate.check_pixels(wide) == "too large (8000x5001 pixels, limit 40,000,000)"
    assert imagegate.check_pixels(normal) is None
    for path in (bomb, wide):
        assert images.check_image(path).reason == imagegate.check_pixels(path)
        with pytest.raises(images.ImageError, match="too large"):
            images.read_image(path)
    paths = [str(bomb), str(normal), str(wide)]
    cfg = InputConfig(height=H, width=W, batch_size=4)
    rows = np.concatenate([r for _, _, r in make_dataset(paths, [0, 1, 0], 2, cfg, training=False,
                                                         with_rows=True).as_numpy_iterator()])
    assert rows.tolist() == [1]
    rows = np.concatenate([r for _, r in make_prefilter_dataset(paths, 32, "center_crop", 4).as_numpy_iterator()])
    assert rows.tolist() == [1]


# --- untrusted bytes: arguments, environment, config ----------------------------------------------


def test_a_deeply_nested_tf_config_is_one_line(tmp_path):
    """A deeply nested TF_CONFIG was a RecursionError traceback."""
    nested = "[" * 20_000 + "]" * 20_000  # a variable may hold 128 KiB
    result = subprocess.run([sys.executable, "-m", "carclf_tui.cli", "--plain", "--stage", "index"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CONFIG": nested})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "carclf-tui: config error: TF_CONFIG: nested too deeply to be a cluster description" in result.stderr


def test_a_config_that_is_a_fifo_is_refused_instead_of_hanging(tmp_path):
    """`--config` naming a FIFO hung in open() until some writer came."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "carclf_tui.cli", "--plain", "--stage", "index", "--config",
                             str(fifo)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"config error: {fifo}: is a named pipe (FIFO) where a file belongs" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_prefilter_shows_the_car_probability_of_kept_photos_too(tmp_path):
    """`predict --prefilter` showed the car probability of the dropped photos only."""
    from carclf_core.prefilter.classifiers import efficientnet_lite0_path

    lite0 = efficientnet_lite0_path()
    if lite0 is None:
        pytest.skip("the demo extra's EfficientNet-Lite0 is not installed")
    run = export_run(tmp_path / "runs", ["red", "plain"], {"model": str(lite0), "weights": "null",
                                                             "threshold": 0.1})
    photos = demo_subset(tmp_path / "photos", makes=("Audi_A4",), per_make=2)
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(photos / "grey.png")
    result = use("predict", str(run.path), str(photos), "--prefilter", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    kept = [r for r in rows if not r["error"]]
    dropped = [r for r in rows if r["error"]]
    assert kept and dropped, rows
    assert all(r["car_probability"] > 0.1 for r in kept) and all(r["car_probability"] <= 0.1 for r in dropped)
    table = use("predict", str(run.path), str(photos), "--prefilter", cwd=tmp_path).stdout.decode()
    header, *lines = [line for line in table.splitlines() if line.strip()]
    assert "car" in header.split()
    for row in kept:
        line = next(line for line in lines if Path(row["path"]).name[-12:] in line)  # a long name keeps its end
        assert f"{row['car_probability']:.2f}" in line.split(), line


# --- untrusted bytes: labels that look alike --------------------------------------------------------

SKODA_NFC, SKODA_NFD = "\u0160koda", "S\u030ckoda"
AUDI_LATIN, AUDI_CYRILLIC = "Audi", "\u0410udi"


def _runner(*args: str, cwd: Path, env: dict | None = None, umask: int | None = None,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "carclf_tui.cli", "--plain", *args], cwd=cwd,
                          capture_output=True, timeout=300, env={**os.environ, **(env or {})},
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def test_labels_merge_across_unicode_forms_and_look_alike_labels_are_warned(tmp_path):
    """`Škoda` composed (NFC) and decomposed (NFD), and Latin `Audi` beside Cyrillic `Аudi`, became
    classes that look identical everywhere: the first pair is one class (NFC, with a warning, as case
    variants are), the second is warned about by name, escaped so the two can be told apart."""
    import pandas as pd

    data = make_dataset(tmp_path / "data", {(SKODA_NFC, "Octavia"): 4, (SKODA_NFD, "Octavia"): 3,
                                            (AUDI_LATIN, "A4"): 4, (AUDI_CYRILLIC, "A4"): 4})
    result = _runner("--stage", "index", "--set", f"data.dir={data}", "--set", "prefilter.mode=off", cwd=tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-3000:]
    index = pd.read_csv(only_run(tmp_path) / "index" / "index.csv", keep_default_na=False)
    assert sorted(set(index["label"])) == sorted({f"{SKODA_NFC}_Octavia", "Audi_A4", f"{AUDI_CYRILLIC}_A4"})
    assert (index["label"] == f"{SKODA_NFC}_Octavia").sum() == 7
    assert ("class names differing only in case or Unicode form merged into '\\u0160koda_Octavia': "
            "'S\\u030ckoda_Octavia'") in out
    assert "2 classes look alike but are spelled with different letters: 'Audi_A4', '\\u0410udi_A4'" in out


def test_invisible_letters_are_escaped_and_plain_tables_align_by_cells():
    """U+3164 HANGUL FILLER showed blank and shifted its heatmap row; wide and combining labels
    misaligned the --plain heatmap, padded by code points."""
    from carclf_core import heatmap
    from carclf_core.display import cell_width, fit_cells, printable

    for blank, shown in (("\u3164", "\\u3164"), ("\u2800", "\\u2800"), ("\u00a0", "\\xa0"), ("\ufe0f", "\\ufe0f"),
                         ("\u115f", "\\u115f"), ("\u3000", "\\u3000"), ("\u200b", "\\u200b")):
        assert printable(f"Kia{blank}_X") == f"Kia{shown}_X"
    for kept in ("\u0160koda", SKODA_NFD, "名前", "Citroën", "Αλφα", "Лада"):
        assert printable(kept) == kept
    for text in ("名前_セダン", SKODA_NFD + "_Octavia", "abc", "ＡＢＣ", "e\u0301\u0301x", "Лада_2107"):
        assert cell_width(text) == cell_len(text), text
        for width in range(1, 12):
            assert cell_len(fit_cells(text, width)) == width, (text, width)
    classes = ["名前_セダン_ワゴン", SKODA_NFD + "_Octavia_Combi", printable("Kia_\u3164\u3164"), "BMW_X5"]
    matrix = np.diag([5, 4, 3, 2])
    lines = heatmap.render(matrix, classes, 60, 12)
    grid = [line for line in lines if "|" in line]
    bars = {cell_len(line[: line.index("|")]) for line in grid}
    assert len(bars) == 1, lines  # every row's grid starts in the same terminal column
    assert all(cell_len(line) <= 60 for line in lines)


# --- a console that cannot encode -----------------------------------------------------------------


def test_a_console_that_cannot_encode_its_characters_never_crashes_the_runner(tmp_path):
    """PYTHONIOENCODING=ascii made the first non-ASCII letter (or the ⏎ of an escaped newline)
    crash the runner, leaving state.json "running": the output escapes what it cannot encode."""
    data = make_dataset(tmp_path / "data", {(SKODA_NFC, "Octavia"): 5, ("名前", "セダン"): 5, ("BMW", "X5"): 5})
    (data / f"BMW_X5_bad\nname{TITLE}.jpg").write_bytes(b"")
    result = _runner("--stage", "index", "--stage", "split", "--set", f"data.dir={data}", "--set",
                     "prefilter.mode=off", "--set", "split.min_per_class=3", cwd=tmp_path,
                     env={"PYTHONIOENCODING": "ascii"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out.decode(errors="replace")[-3000:]
    assert "Traceback" not in out.decode("ascii")  # and all of it is ASCII
    assert_nothing_raw(out, "an ASCII console")
    assert "BMW_X5_bad\\u23cename\\x1b]0;pwned-title\\x07.jpg" in out.decode()  # ⏎ itself, escaped
    run = only_run(tmp_path)
    assert stage_status(run, "index") == stage_status(run, "split") == "done"


# --- shared machines ------------------------------------------------------------------------------


def test_files_follow_the_umask_and_folders_too(tmp_path):
    """Every atomically written file was 0600 whatever the umask (tempfile.mkstemp's mode): a
    teammate could not read a shared run."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 4, ("BMW", "X5"): 4})
    for umask, file_mode, folder_mode in ((0o022, 0o644, 0o755), (0o007, 0o660, 0o770)):
        root = tmp_path / f"runs-{umask:o}"
        result = _runner("--stage", "index", "--stage", "split", "--set", f"data.dir={data}", "--set",
                         f"run.root={root}", "--set", "prefilter.mode=off", "--set", "split.min_per_class=3",
                         cwd=tmp_path, umask=umask)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()[-3000:]
        (run,) = root.iterdir()
        files = [p for p in run.rglob("*") if p.is_file()]
        assert {"state.json", "config.yaml", "index.csv", "splits.csv", "events.jsonl"} <= {p.name for p in files}
        wrong = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files
                 if p.stat().st_mode & 0o777 != file_mode}
        assert not wrong, (oct(umask), wrong)
        folders = [run, *(p for p in run.rglob("*") if p.is_dir())]
        assert all(p.stat().st_mode & 0o777 == folder_mode for p in folders), [oct(p.stat().st_mode) for p in folders]


NOBODY = 65534


def test_a_teammate_reads_a_shared_run_and_an_unreadable_file_is_one_line(tmp_path):
    """A teammate's predict on a shared run failed with a PermissionError traceback: with the umask
    followed it works; a file they truly cannot read is one line naming it, exit 2."""
    import shutil
    import tempfile

    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot act as another user")
    prefix = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups") if os.geteuid() == 0 else ()
    if not prefix:
        pytest.skip("not root: cannot act as another user")
    base = Path(tempfile.mkdtemp(prefix="carclf-shared-", dir="/tmp"))
    old = os.umask(0o022)
    try:
        base.chmod(0o755)
        run = export_run(base / "runs", ["red", "plain"])
        photo = base / "left.png"
        Image.fromarray(picture(True)).save(photo)
        result = use("predict", str(run.path), str(photo), cwd=base, env={"HOME": str(base)}, prefix=prefix)
        err = result.stderr.decode()
        if result.returncode != 0 and "No module named" in err:
            pytest.skip(f"the unprivileged user cannot import carclf from this checkout: {err[-300:]}")
        assert result.returncode == 0, err[-3000:]
        assert "red" in result.stdout.decode()
        contract = run.path / "evaluate" / "export" / "contract.json"
        contract.chmod(0o600)
        result = use("predict", str(run.path), str(photo), cwd=base, env={"HOME": str(base)}, prefix=prefix)
        err = result.stderr.decode()
        assert result.returncode == 2, err[-3000:]
        assert "Traceback" not in err
        assert [line for line in err.splitlines() if line.startswith("carclf-tui")] == [
            f"carclf-tui predict: {contract}: Permission denied"]
    finally:
        os.umask(old)
        shutil.rmtree(base, ignore_errors=True)


def test_a_symlinked_runner_log_or_explain_folder_is_refused(tmp_path, hostile):
    """The dashboard appended runner output through a symlinked RUN/runner.log, and explain wrote
    into a symlinked RUN/explain/: both refused, as events.jsonl and .lock are; the target untouched."""
    from carclf_core.errors import RunError
    from carclf_tui.runner import Runner as DashboardRunner

    run = create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}, "prefilter": {"mode": "off"}}))
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (run.path / "runner.log").symlink_to(target)
    runner = DashboardRunner(run)
    with pytest.raises(RunError, match="runner.log: is a symbolic link; refusing to follow it"):
        runner.start(["index"])
    assert runner.process is None and target.read_text() == "keep me\n"
    assert runner.log_tail() == []  # nor read through it

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    explained = hostile["run"].path / "explain"
    shutil_target = explained.with_name("explain-real")
    if explained.exists():
        explained.rename(shutil_target)
    explained.symlink_to(elsewhere)
    try:
        result = use("explain", str(hostile["run"].path), str(hostile["photos"] / f"title{TITLE}.png"), "--no-show",
                     cwd=tmp_path)
        err = result.stderr.decode()
        assert result.returncode == 2, err[-3000:]
        assert f"{explained}: is a symbolic link; refusing to write through it" in err
        assert list(elsewhere.iterdir()) == []
    finally:
        explained.unlink()
        if shutil_target.exists():
            shutil_target.rename(explained)


def test_a_shard_that_did_its_share_waits_for_the_others_instead_of_failing():
    """A prefilter shard that finished its own chunks showed "failed, runner is gone" and "errors 1":
    it shows that it waits for the other shards, with the chunks scored of all."""
    from carclf_core import events as ev
    from carclf_core import runstate as rs
    from carclf_tui.widgets.stages import StagesTable, status_text

    state = rs.fold(rs.RunState(), [
        ev.RunStarted(run_dir="/runs/r", stages=("prefilter",), pid=10),
        ev.StageStarted(stage="prefilter", total=400),
        ev.StageUpdated(stage="prefilter", summary="shard 1/2 done (200 images scored); waiting for 2 chunk(s)",
                        result={"shard": "1/2", "computed": 200, "chunks_done": 2, "chunks": 4}),
    ])
    lost = rs.runner_lost(state, "runner is gone (no process holds the run's lock)", ["last line"], 5.0)
    stage = lost.stages["prefilter"]
    assert stage.status == rs.RUNNING and lost.errors == 0
    assert stage.summary == "shard 1/2 did its share; waiting for the other shards: 2 of 4 chunks scored"
    assert status_text(stage).plain == "◷ waiting"
    assert "waiting for the other shards: 2 of 4" in StagesTable._cells(stage, 6.0)[3].plain
    done = rs.fold(lost, [ev.StageFinished(stage="prefilter", duration_s=9.0, summary="300 / 400 kept")])
    assert done.stages["prefilter"].status == rs.DONE and done.errors == 0
    # a runner that is gone without having done its share is still a failure
    crashed = rs.runner_lost(rs.fold(rs.RunState(), [ev.StageStarted(stage="prefilter")]), "runner is gone")
    assert crashed.stages["prefilter"].status == rs.FAILED and crashed.errors == 1


def test_argument_errors_quote_names_escaped(tmp_path):
    """argparse quotes what it did not understand: a file name passed through a glob (`-x<ESC>...`)
    reached the terminal raw in `unrecognized arguments`."""
    for args in (("predict", "RUN", "photo.jpg", f"--x{TITLE}"), ("explain", "RUN", "a.jpg", f"--{CLEAR}"),
                 ("--run-all", f"--x{TITLE}"), ("--shard", f"1{TITLE}")):
        result = use(*args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr.decode()
        assert_nothing_raw(result.stdout + result.stderr, f"the error for {args!r}")
        assert b"error: " in result.stderr and (b"\\x1b]0;pwned-title" in result.stderr or b"\\x1b[2J" in result.stderr)


def test_the_dashboards_follower_lets_a_waiting_shard_wait_and_still_catches_a_lost_runner(tmp_path):
    """The same through the dashboard's follower: the real event log, the real lock check, no runner
    process left. The shard's stage waits; a stage whose runner vanished mid-way still fails."""
    from carclf_core import events as ev
    from carclf_core import runstate as rs
    from carclf_core.eventlog import EventFollower
    from carclf_tui.follow import _Watch
    from carclf_tui.runner import Runner as DashboardRunner
    from carclf_tui.sample_run import write_events

    def polled(events: list) -> rs.RunState:
        run = create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}, "prefilter": {"mode": "off"}}))
        write_events(run, events)
        watch = _Watch(EventFollower(run.events_path), DashboardRunner(run), lambda: 100.0)
        state = rs.RunState()
        for _ in range(4):  # the follower calls a runner lost after two quiet polls without a lock holder
            state, _ = watch.poll(state)
        return state

    started = [ev.RunStarted(run_dir="r", stages=("prefilter",), pid=1), ev.StageStarted(stage="prefilter", total=8)]
    shard = ev.StageUpdated(stage="prefilter", summary="shard 2/2 done", result={"shard": "2/2", "chunks_done": 1,
                                                                                 "chunks": 2})
    waiting = polled([*started, shard])
    assert waiting.stages["prefilter"].status == rs.RUNNING and waiting.errors == 0
    assert waiting.stages["prefilter"].summary.endswith("waiting for the other shards: 1 of 2 chunks scored")
    lost = polled(started)
    assert lost.stages["prefilter"].status == rs.FAILED and lost.errors == 1
