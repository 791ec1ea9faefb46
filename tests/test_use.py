"""Using a run's exported model: the contract, predict, explain, the SavedModel and the TFLite file.

The model here is a small real Keras network whose weights are set by hand so that it answers
"red" when a red patch is in the picture: explanations then have a known right answer (the patch),
and the export, serving and prediction paths are the real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.text import Text

from carclf_core import config as config_mod
from carclf_core.export import CONTRACT_FILE, Contract, export_dir, make_contract, read_contract, write_export
from carclf_core.runs import create_run

from .test_cli import carclf

keras = pytest.importorskip("keras")
H, W = 48, 64


def red_detector() -> keras.Model:
    """Class 0 ("red") grows with the share of strongly red pixels; class 1 ("plain") is the rest."""
    inputs = keras.Input((H, W, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(1, 1, activation="relu", name="redness")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("redness").set_weights([np.array([2.0, -1.0, -1.0]).reshape(1, 1, 3, 1), np.array([-0.5])])
    model.get_layer("head").set_weights([np.array([[40.0, -40.0]]), np.array([-1.0, 1.0])])
    return model


def picture(left: bool) -> np.ndarray:
    image = np.full((H, W, 3), 110, dtype=np.uint8)
    image[:, :, 2] = 140  # a bluish grey background
    x0 = 4 if left else W - 20
    image[16:32, x0 : x0 + 16] = (230, 20, 20)
    return image


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("use")
    config = config_mod.from_dict({"run": {"root": str(tmp / "runs")}, "input": {"height": H, "width": W},
                                   "prefilter": {"mode": "off"}})
    run = create_run(config)
    model = red_detector()
    photos = tmp / "photos"
    photos.mkdir()
    for name, left in (("left", True), ("right", False)):
        Image.fromarray(picture(left)).save(photos / f"{name}.png")
    plain = np.full((H, W, 3), 120, dtype=np.uint8)
    Image.fromarray(plain).save(photos / "plain.jpg", quality=95)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    check = np.stack([picture(True), picture(False), plain]).astype(np.float32)
    contract = make_contract(run, config, ["red", "plain"], {"accuracy": 1.0, "images": 3})
    written = write_export(model, run, contract, savedmodel=True, tflite=True, check_images=check)
    return dict(run=run, model=model, photos=photos, contract=written, check=check, tmp=tmp)


def test_the_contract_round_trips_and_says_how_to_feed_the_model(exported):
    run = exported["run"]
    assert read_contract(run) == exported["contract"]
    data = json.loads((export_dir(run) / CONTRACT_FILE).read_text())
    steps = ("decode", "exif_orientation", "scaled_size", "interpolation", "place", "clip")
    assert {k: v for k, v in data["input"].items() if k not in steps} == {
        "height": H, "width": W, "resize": "pad", "channels": "RGB", "dtype": "float32", "pixel_range": [0, 255]}
    assert "INTEGER_ACCURATE" in data["input"]["decode"]["jpeg"]
    assert data["input"]["exif_orientation"]["transpose"]["6"] == "ROTATE_270"
    assert data["input"]["interpolation"]["antialias_shrink"] == 3 and data["format"] == 2
    assert data["classes"] == ["red", "plain"] and data["run"] == str(run.path)
    assert data["files"] == {"keras": "model.keras", "savedmodel": "savedmodel", "tflite": "model.tflite"}
    assert data["serving"] == {"signature": "serving_default", "input": "image", "output": "probabilities"}
    assert {"keras", "tensorflow"} <= set(data["versions"]) or {"keras", "tensorflow-cpu"} <= set(data["versions"])
    assert Contract.from_json(data) == read_contract(run)


def test_the_savedmodel_serves_raw_pixels_like_the_keras_model(exported):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir(exported["run"]) / "savedmodel"))
    serve = loaded.signatures["serving_default"]
    got = serve(image=tf.constant(exported["check"]))["probabilities"].numpy()
    want = exported["model"].predict(exported["check"], verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[0].argmax() == 0 and got[2].argmax() == 1  # the red picture is red, the plain one is not


def test_the_tflite_file_predicts_like_the_keras_model(exported):
    from carclf_core.prefilter.classifiers import tflite_interpreter

    interpreter = tflite_interpreter(export_dir(exported["run"]) / "model.tflite")
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], exported["check"][:1])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]),
                               exported["model"].predict(exported["check"][:1], verbose=0), atol=1e-4)


def test_predict_names_bad_files_and_answers_the_rest(exported, tmp_path):
    run, photos = exported["run"], exported["photos"]
    result = carclf("predict", str(run.path), str(photos), "--json", "--top-k", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line) for line in result.stdout.splitlines()}
    assert set(rows) == {"left.png", "right.png", "plain.jpg", "broken.jpg"}
    assert rows["left.png"]["top"][0]["class"] == "red" and rows["right.png"]["top"][0]["class"] == "red"
    assert rows["plain.jpg"]["top"][0]["class"] == "plain"
    assert [t["class"] for t in rows["left.png"]["top"]] == ["red", "plain"]
    assert rows["broken.jpg"]["top"] == [] and rows["broken.jpg"]["error"]
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr
    expected = exported["model"].predict(exported["check"][:1], verbose=0)[0, 0]
    assert rows["left.png"]["top"][0]["probability"] == pytest.approx(float(expected), abs=1e-5)
    table = carclf("predict", str(run.path), str(photos / "plain.jpg"), cwd=tmp_path)
    assert table.returncode == 0 and "plain.jpg" in table.stdout and "plain" in table.stdout
    csv_out = carclf("predict", str(run.path), str(photos / "left.png"), "--csv", cwd=tmp_path)
    header, row = csv_out.stdout.splitlines()[:2]
    assert header.startswith("path,error,car_probability,class1,probability1") and ",red," in row


def test_predict_and_explain_refuse_a_run_without_an_export(tmp_path):
    run = create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}}))
    for command in (["predict", str(run.path), str(tmp_path)], ["explain", str(run.path), "x.jpg"]):
        result = carclf(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert "no exported model" in result.stderr and "run the evaluate stage first" in result.stderr
    missing = carclf("predict", str(tmp_path / "nope"), "x.jpg", cwd=tmp_path)
    assert missing.returncode == 2 and "no such run folder" in missing.stderr


def test_explanations_point_at_the_red_patch_wherever_it_is(exported):
    from carclf_core.explain import gradcam, hottest, occlusion

    model = exported["model"]
    for left in (True, False):
        image = picture(left).astype(np.float32)
        for method in (occlusion, gradcam):
            row, col = hottest(method(model, image, 0))
            assert 0.3 < row < 0.7, method.__name__
            assert (col < 0.4) if left else (col > 0.6), (method.__name__, left, col)


def test_explain_saves_overlays_under_the_run(exported, tmp_path):
    from carclf_core.explain import SAVED_SIDE

    run, photos = exported["run"], exported["photos"]
    result = carclf("explain", str(run.path), str(photos / "right.png"), "--no-show", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("explained: red, probability 0.9") and "(the prediction)" in result.stdout
    for method in ("occlusion", "gradcam"):
        path = run.path / "explain" / f"right-{method}.png"
        assert f"{method}: {path}" in result.stdout
        assert Image.open(path).size == (SAVED_SIDE, SAVED_SIDE * H // W)  # readable, not the model's 64x48
    panel = Image.open(run.path / "explain" / "right-explained.png")
    assert panel.width >= 3 * SAVED_SIDE and panel.height > SAVED_SIDE * H // W  # photo, both maps, the scale
    plain = carclf("explain", str(run.path), str(photos / "right.png"), "--no-show", "--class", "plain", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("explained: plain, probability 0.0")
    assert "the model predicts red (0.9" in plain.stdout
    other = carclf("explain", str(run.path), str(photos / "right.png"), "--class", "violet", cwd=tmp_path)
    assert other.returncode == 2 and "'violet' is not one of the run's 2 classes" in other.stderr


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_explain_draws_the_photo_both_maps_and_the_scale_at_a_readable_size(exported, tmp_path, size):
    import io

    from rich.console import Console

    from carclf_core.explain import explain
    from carclf_tui.use import draw_explanation

    photos = exported["photos"]
    done = explain(exported["model"], exported["contract"], photos / "right.png", tmp_path)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=size[0], height=size[1], color_system="truecolor")
    draw_explanation(console, done)
    lines = Text.from_ansi(out.getvalue()).plain.split("\n")
    titles = ("the photo, as the model sees it", "occlusion: where hiding it costs",
              "Grad-CAM: what the last features weigh")
    assert all(len(line) <= size[0] for line in lines)
    assert lines[-2].startswith("colour: 0 no effect ") and lines[-2].endswith(" 1 the most")
    pictures = [line for line in lines if line.strip() and not any(t in line for t in titles)][:-1]
    if size[0] >= 200:  # side by side: one title line, the three pictures in one strip
        assert all(t in lines[0] for t in titles) and len(pictures) <= size[1] - 3
        assert min(len(line.rstrip()) for line in pictures) >= 180
    else:  # one under another: each as wide as fits the screen's height, a whole screen at most
        assert [line for line in lines if line in titles] == list(titles)
        assert len(pictures) == 3 * round(len(pictures) / 3) and len(pictures) // 3 <= size[1] - 3
        assert min(len(line.rstrip()) for line in pictures) >= 50  # was 60x3 cells for all of a map


# --- the contract, followed by a client without carclf --------------------------------------------

CH, CW = 60, 80  # the contract's input: 4:3, which none of the photos below has
README = Path(__file__).resolve().parent.parent / "README.md"
CLIENT_MARK = "<!-- contract client: tests/test_use.py runs the code of the next block -->"


def readme_client() -> dict:
    """The README's client code (the Python block after its marker), run as a module of its own: its
    ``prepare(path, contract)`` uses Pillow, numpy and ``contract.json``, nothing of carclf."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index(CLIENT_MARK):].split("```python\n", 1)[1].split("```", 1)[0]
    imported = {name.split(".")[0] for line in re.findall(r"^(?:import|from) +(.+)$", block, re.M)
                for name in re.findall(r"[\w.]+", line.split(" import ")[0].replace(" as ", ","))}
    assert imported and imported <= {"json", "sys", "urllib", "numpy", "PIL", "np"}, imported
    namespace: dict = {"__name__": "readme_client"}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README's code
    return namespace


def random_convnet(classes: int = 5) -> keras.Model:
    """A small seeded network whose answer moves with every pixel (no saturated softmax)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((CH, CW, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def _jpeg(path: Path, pixels: np.ndarray, orientation: int = 1) -> Path:
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, quality=90, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def contract_photos(tmp_path_factory) -> dict[str, Path]:
    """Real photos (scikit-image's) as JPEGs: enlarged, shrunk less and more than 3x, 3,000 pixels,
    and one stored on its side with EXIF orientation 6; none has the contract's 4:3 shape."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("client")
    sized = lambda pixels, w, h: np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.LANCZOS))  # noqa: E731
    rocket = data.rocket()  # 640 x 427, stored turned a quarter: upright it is portrait
    return {
        "tiny (enlarged)": _jpeg(folder / "tiny.jpg", sized(data.chelsea(), 60, 40)),
        "small (shrunk < 3x)": _jpeg(folder / "small.jpg", sized(data.coffee(), 150, 100)),
        "square": _jpeg(folder / "square.jpg", data.astronaut()),
        "sideways (EXIF 6)": _jpeg(folder / "sideways.jpg", np.ascontiguousarray(np.rot90(rocket)), orientation=6),
        "large (3,000 px)": _jpeg(folder / "large.jpg", sized(data.hubble_deep_field(), 3000, 2616)),
    }


@pytest.mark.parametrize("mode", ["pad", "crop", "stretch"])
def test_a_client_following_the_contract_alone_gets_predicts_probabilities(tmp_path, contract_photos, mode):
    """The README's client prepares each photo from ``contract.json`` alone (Pillow and numpy) and the
    exported model then answers what ``predict`` answers, within 1e-4, for each resize mode."""
    from carclf_core.explain import prepare  # what predict feeds the model, one photo at a time
    from carclf_core.export import load_exported
    from carclf_core.predict import predict

    config = config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}, "prefilter": {"mode": "off"},
                                   "input": {"height": CH, "width": CW, "resize": mode}})
    run = create_run(config)
    classes = ["a", "b", "c", "d", "e"]
    write_export(random_convnet(len(classes)), run, make_contract(run, config, classes, {}), savedmodel=False,
                 tflite=False)
    model, contract = load_exported(run)
    names, files = list(contract_photos), list(contract_photos.values())
    answers = list(predict(model, contract, files, top_k=len(classes)))
    ours = np.array([[dict(a.top)[c] for c in classes] for a in answers])

    client = readme_client()
    on_disk = json.loads((export_dir(run) / CONTRACT_FILE).read_text())
    prepared = np.stack([client["prepare"](path, on_disk) for path in files])
    assert prepared.shape == (len(files), CH, CW, 3) and prepared.dtype == np.float32
    theirs = np.asarray(model.predict_on_batch(prepared), dtype=np.float64)
    pixels = np.abs(prepared - np.stack([prepare(contract, path) for path in files])).max(axis=(1, 2, 3))
    for name, a, b, levels in zip(names, ours, theirs, pixels, strict=True):
        assert levels < 0.05, (mode, name, f"the pixels differ by up to {levels} levels")
        assert np.abs(a - b).max() < 1e-4, (mode, name, np.abs(a - b).max())
    # the network notices a preparation that is off: the pictures upside down move its answer
    flipped = np.asarray(model.predict_on_batch(prepared[:, ::-1]), dtype=np.float64)
    assert np.abs(flipped - theirs).max() > 1e-3


def test_predict_follows_a_pad_contract_on_a_photo_of_another_aspect_ratio(exported, tmp_path):
    """A 4:1 photo under the ``pad`` contract: ``predict`` answers what the evaluate stage's pipeline
    gives (scaled to fit, black above and below), not what a stretched photo gives."""
    from carclf_core.inputs import make_dataset
    from carclf_core.predict import predict

    wide = np.full((40, 160, 3), 110, dtype=np.uint8)
    wide[..., 2] = 140
    wide[10:30, 20:40] = (230, 20, 20)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    contract = exported["contract"]
    assert contract.resize == "pad" and contract.width / contract.height != 4
    (answer,) = predict(exported["model"], contract, [path], top_k=2)
    got = dict(answer.top)["red"]

    def pipeline(resize: str) -> float:
        cfg = config_mod.from_dict({"input": {"height": H, "width": W, "resize": resize}}).input
        ((images, _),) = list(make_dataset([str(path)], [0], 2, cfg, training=False).as_numpy_iterator())
        return float(exported["model"].predict_on_batch(images)[0, 0])

    assert got == pytest.approx(pipeline("pad"), abs=1e-6)
    assert abs(pipeline("stretch") - pipeline("pad")) > 0.01, "the photo must tell pad from stretch"
