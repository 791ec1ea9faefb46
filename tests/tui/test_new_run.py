"""``n`` starts a run like the one shown: its configuration (data, classes, model, epochs), beside it,
its name offered to edit; a run that cannot be made is a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from carclf_core import config as config_mod
from carclf_core.runs import write_text_atomic
from carclf_tui.screens.confirm import RunNameScreen
from carclf_tui.screens.main import MainScreen

from .conftest import make_app, wait_until

SIZES = [(80, 24), (200, 60)]


def shown_config(tmp_path: Path) -> config_mod.Config:
    return config_mod.from_dict({"data": {"dir": str(tmp_path / "my-cars")}, "split": {"top_n": 5},
                                 "train": {"backbone": "mobilenetv3small", "epochs": 3},
                                 "run": {"name": "small-cars", "root": str(tmp_path / "runs")}})


@pytest.mark.parametrize("size", SIZES)
async def test_n_takes_the_shown_runs_configuration_and_offers_its_name(finished_run, tmp_path, size) -> None:
    write_text_atomic(finished_run.config_path, config_mod.dump(shown_config(tmp_path)))
    app = make_app(finished_run)
    app.config = config_mod.from_dict({"run": {"root": str(tmp_path / "elsewhere"), "name": "dashboard"}})
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunNameScreen))
        assert app.screen.query_one("#run-name").value == "small-cars"  # the shown run's name, to edit
        await pilot.press("end", "backspace", "backspace", "backspace", "backspace", *"vans", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.run_dir.name.endswith("-small-vans"))
        config = app.run_dir.load_config()
        assert Path(app.run_dir.path).parent == Path(finished_run.path).parent  # beside the shown run
        assert (config.data.dir, config.split.top_n, config.train.backbone, config.train.epochs) == (
            str(tmp_path / "my-cars"), 5, "mobilenetv3small", 3)
        assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("size", SIZES)
async def test_a_new_run_that_cannot_be_made_is_a_message(finished_run, tmp_path, size) -> None:
    (finished_run.config_path).write_text("train: {epochs: -1}\n", encoding="utf-8")  # damaged by hand
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the runs folder would go", encoding="utf-8")
    app = make_app(finished_run)
    app.config = config_mod.from_dict({"run": {"root": str(blocked), "name": "dashboard"}})
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunNameScreen))
        messages = [str(n.message) for n in app._notifications]
        assert any("the shown run's configuration cannot be read" in m and "train.epochs" in m for m in messages)
        assert app.screen.query_one("#run-name").value == "dashboard"
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(str(n.message).startswith("no new run: ") for n in app._notifications))
        assert app.screen is screen and app.run_dir == finished_run  # the shown run stays
