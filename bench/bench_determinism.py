"""What ``train.deterministic`` costs an epoch: the training pipeline and fit with TensorFlow's op
determinism and an ordered pipeline, against the same without, on the same data and model.

Op determinism is process-wide and read when TensorFlow builds its kernels, so each measurement runs
in a process of its own: the two settings alternate (off, on, off, on, ...), each process fitting one
warm-up epoch (graph building, not measured) and then ``--epochs`` timed ones. Each process builds
what the train stage builds: ``inputs.make_dataset`` for the training split with its row audit, the
seed set by ``keras.utils.set_random_seed``, ``model.build_model`` + ``model.compile_model``.
Printed: the median epoch seconds of each setting and the ratio on / off (1.05: 5 % slower), and,
as a check, whether the two deterministic processes gave the same losses bit for bit.

    python bench/bench_determinism.py [--rounds 2] [--epochs 3] [--size 106x160]   # ~2-3 min on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path


def one_process(deterministic: bool, epochs: int, height: int, width: int, data: Path | None) -> dict:
    """Fit in this process; epoch seconds and the losses."""
    import keras
    from bench_input import demo_training_files  # this folder's: the same files bench_input.py reads

    from carclf_core import inputs, keras_env
    from carclf_core import model as model_mod

    config, classes, paths, labels = demo_training_files(data, height, width)
    keras.utils.set_random_seed(42)
    with keras_env.op_determinism(deterministic):
        audit = inputs.RowAudit(len(paths))
        train = inputs.make_dataset(paths, labels, len(classes), config.input, training=True, seed=42,
                                    audit=audit, deterministic=deterministic)
        model, _ = model_mod.build_model(config.train, (height, width, 3), len(classes))
        model_mod.compile_model(model, 1e-3)
        seconds, losses = [], []
        for epoch in range(epochs + 1):
            audit.start()
            started = time.perf_counter()
            history = model.fit(train, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
            if epoch:  # the first builds the graphs
                seconds.append(time.perf_counter() - started)
            losses.append(history.history["loss"][0])
    return {"deterministic": deterministic, "images": len(paths), "seconds": seconds, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes of each setting, alternating")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs a process")
    parser.add_argument("--size", default="106x160", help="input HEIGHTxWIDTH")
    parser.add_argument("--data", type=Path, help="image folder (default: the demo data)")
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    if args.child:
        print(json.dumps(one_process(args.child == "on", args.epochs, height, width, args.data)))
        return
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in ("off", "on"):
            command = [sys.executable, __file__, "--child", setting, "--epochs", str(args.epochs), "--size", args.size]
            if args.data:
                command += ["--data", str(args.data)]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {s: statistics.median(t for run in runs[s] for t in run["seconds"]) for s in runs}
    same = len({tuple(run["losses"]) for run in runs["on"]}) == 1
    print(json.dumps({"images": runs["on"][0]["images"], "input": args.size, "load": os.getloadavg(),
                      "epoch_s": {s: [round(t, 3) for run in runs[s] for t in run["seconds"]] for s in runs},
                      "losses_on": [run["losses"] for run in runs["on"]],
                      "losses_off": [run["losses"] for run in runs["off"]]}))
    print(f"epoch seconds: deterministic {median['on']:.2f} vs not {median['off']:.2f}: ratio "
          f"{median['on'] / median['off']:.3f}; deterministic processes gave the same losses: {same}")


if __name__ == "__main__":
    main()
