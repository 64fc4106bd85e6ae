"""The textured benchmark's data: the same images under exact and annotator labels, misses that follow size and
occlusion, the systematic box bias of each class, and the stated share of images the noise branch can take."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from .helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks/ is not a package; scikit-image comes with [test]
import textured  # noqa: E402


def test_the_same_images_under_exact_and_annotator_labels(tmp_path):
    counts = {"train": 12, "val": 4, "test": 4}
    exact = textured.make_textured_dataset(tmp_path / "e", counts, imgsz=96, seed=3, labels="exact").parent
    noisy = textured.make_textured_dataset(tmp_path / "a", counts, imgsz=96, seed=3, labels="annotator").parent
    again = textured.make_textured_dataset(tmp_path / "e2", counts, imgsz=96, seed=3, labels="exact").parent
    for split, n in counts.items():
        for i in range(n):
            name = f"{i:05d}"
            img = (exact / "images" / split / f"{name}.jpg").read_bytes()
            assert img == (noisy / "images" / split / f"{name}.jpg").read_bytes()
            assert img == (again / "images" / split / f"{name}.jpg").read_bytes()
    labels = [(d / "labels" / "train").glob("*.txt") for d in (exact, noisy)]
    exact_text, noisy_text = ("".join(p.read_text() for p in sorted(g)) for g in labels)
    assert exact_text != noisy_text and len(noisy_text.splitlines()) < len(exact_text.splitlines())
    assert "test: images/test" in (exact / "data.yaml").read_text()


def _objs(cls: int, side: float, n: int, occluded: float = 0.0, crowded: bool = False) -> list:
    return [textured.Obj(cls, (50.0, 50.0, 50.0 + side, 50.0 + side), occluded, crowded) for _ in range(n)]


def test_misses_rise_for_small_and_occluded_objects():
    ann, size, n = textured.Annotator(), 640, 4000
    rng = np.random.default_rng(0)

    def missed(**kw):
        return 1 - len(textured.annotate(rng, _objs(1, n=n, **kw), size, ann)) / n

    small, medium, large = missed(side=20), missed(side=60), missed(side=200)
    assert small == pytest.approx(ann.miss_small, abs=0.03)
    assert medium == pytest.approx(ann.miss_medium, abs=0.02) and large == pytest.approx(ann.miss_large, abs=0.01)
    assert missed(side=60, occluded=0.5) == pytest.approx(ann.miss_medium * 2, abs=0.025)
    assert missed(side=60, crowded=True) == pytest.approx(ann.miss_medium, abs=0.02)  # crowds: more gross errors


@pytest.mark.parametrize("cls", range(4))
def test_each_class_has_its_systematic_box_bias(cls):
    ann, size, side = textured.Annotator(gross=0.0, gross_crowded=0.0, swap=0.0, miss_medium=0.0), 640, 80.0
    labels = textured.annotate(np.random.default_rng(cls), _objs(cls, side, 3000), size, ann)
    boxes = np.array([o.box for o in labels])
    outwards = (boxes - [50, 50, 50 + side, 50 + side]) * [-1, -1, 1, 1] / side  # left, top, right, bottom
    assert outwards.mean(0) == pytest.approx(ann.bias[cls], abs=0.003)
    assert outwards.std(0) == pytest.approx(np.hypot(ann.edge_px * size, ann.edge_sd * side) / side, rel=0.1)


def test_layouts_give_small_objects_in_a_stated_share_of_images():
    rng = np.random.default_rng(0)
    images = [textured.sample_image(rng, 192)[1] for _ in range(200)]
    areas = [[(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) / 192**2 for o in objs] for objs in images]
    all_small = np.mean([bool(a) and max(a) < textured.SMALL_AREA for a in areas])
    assert 0.15 < all_small < 0.35  # the crowd layout: 25 % of the images (a few lose an object to placement)
    every = np.concatenate([a for a in areas if a])
    assert (every < textured.SMALL_AREA).mean() > 0.3 and (every > textured.MEDIUM_AREA).mean() > 0.05
    assert all(o.occluded <= 1 - textured.MIN_VISIBLE + 1e-6 for objs in images for o in objs)
