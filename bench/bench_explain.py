"""How long one photo takes to explain with the demo's model on this machine (target: under 2 s on 2 cores).

Builds the demo's classifier (MobileNetV3Small at 106x160, random init, 8 classes: the weights do not
change the cost), then times `explain.occlusion` and `explain.gradcam` on a demo photo, each after a
warm-up call, against one plain forward pass measured in the same run.

    python bench/bench_explain.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up: graph tracing and kernel selection are not what a user waits for twice
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    from carclf_core import config as config_mod
    from carclf_core import demo, explain, model
    from carclf_core.export import Contract

    overrides = demo.demo_overrides(demo.ensure_demo_data())
    config = config_mod.from_dict({"train": overrides["train"], "input": overrides["input"]})
    h, w = config.input.height, config.input.width
    classifier, _ = model.build_model(config.train, (h, w, 3), 8)
    contract = Contract(height=h, width=w, resize=config.input.resize, classes=tuple(f"c{i}" for i in range(8)))
    photo = sorted(demo.ensure_demo_data().glob("*.jpg"))[0]
    image = explain.prepare(contract, photo)
    forward = best_of(lambda: np.asarray(classifier.predict_on_batch(image[None])), args.repeat)
    occlusion = best_of(lambda: explain.occlusion(classifier, image, 0), args.repeat)
    gradcam = best_of(lambda: explain.gradcam(classifier, image, 0), args.repeat)
    both = occlusion + gradcam
    print(f"demo model {config.train.backbone} {h}x{w}, photo {photo.name}")
    print(f"one forward pass       {forward * 1000:8.1f} ms")
    print(f"occlusion sensitivity  {occlusion * 1000:8.1f} ms  ({occlusion / forward:.0f}x a forward pass)")
    print(f"Grad-CAM               {gradcam * 1000:8.1f} ms  ({gradcam / forward:.0f}x a forward pass)")
    print(f"both, one photo        {both:8.2f} s   target < 2 s: {'met' if both < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
