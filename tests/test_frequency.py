"""The size-aware frequency augmentation: the rule, the spectra it changes, boxes, serialisation, seeding."""

import random
import subprocess
import sys

import albumentations as A
import cv2
import numpy as np
import pytest
from ultralytics.data.augment import Albumentations
from ultralytics.utils.instance import Instances

from ikd_yolo.frequency import PAD_VALUE, SizeAwareFrequencyAug, SourceImageFrequency, choose_branch


def natural_image(size=256, channels=3) -> np.ndarray:
    """A smooth scene: gradients and a few soft-edged shapes (little high-frequency energy, like a photo)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([120 + 80 * xx, 90 + 100 * yy, 160 - 60 * xx * yy], -1)
    img = np.ascontiguousarray(img.astype(np.uint8))
    cv2.circle(img, (80, 90), 40, (30, 200, 60), -1)
    cv2.rectangle(img, (140, 130), (220, 210), (200, 40, 40), -1)
    img = cv2.GaussianBlur(img, (7, 7), 2)
    return img if channels == 3 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None]


def high_freq_share(img: np.ndarray, radius: float = 0.25) -> float:
    """Share of spectral energy (DC removed) above ``radius`` x Nyquist in the grayscale image."""
    g = img.astype(np.float64).mean(-1) if img.ndim == 3 else img.astype(np.float64)
    f = np.fft.fftshift(np.abs(np.fft.fft2(g - g.mean())) ** 2)
    h, w = g.shape
    fy, fx = np.meshgrid(np.linspace(-1, 1, h, endpoint=False), np.linspace(-1, 1, w, endpoint=False), indexing="ij")
    return float(f[np.hypot(fy, fx) > radius].sum() / f.sum())


def labels_for(img, boxes_xyxy):
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    return {
        "img": img.copy(),
        "cls": np.arange(len(boxes), dtype=np.float32).reshape(-1, 1),
        "instances": Instances(bboxes=boxes, segments=np.zeros((0, 1000, 2)), bbox_format="xyxy", normalized=False),
    }


def run(transform, img, boxes):
    """Apply through Ultralytics' wrapper as v8_transforms does; return image and xyxy pixel boxes."""
    out = Albumentations(p=1.0, transforms=[transform])(labels_for(img, boxes))
    inst = out["instances"]
    inst.convert_bbox("xyxy")
    inst.denormalize(*out["img"].shape[:2][::-1])
    return out["img"], inst.bboxes


SMALL = [[20, 20, 30, 30], [100, 150, 111, 160]]  # 10x10 and 11x10 px on 256x256: below 0.25 % of the area
LARGE = [[20, 20, 30, 30], [60, 60, 200, 220]]


def test_rule_on_crafted_label_sets():
    t = 0.0025
    assert choose_branch(np.array([0.001, 0.002]), t) == "noise"
    assert choose_branch(np.array([0.001, 0.3]), t) == "crop"
    assert choose_branch(np.array([0.0025]), t) == "crop"  # at the threshold: not small (COCO: area < 32^2)
    assert choose_branch(np.array([0.00249]), t) == "noise"
    assert choose_branch(np.zeros(0), t) == "none"


def test_noise_branch_raises_high_frequency_share():
    img = natural_image()
    before = high_freq_share(img)
    out, boxes = run(SizeAwareFrequencyAug(noise_p=1.0), img, SMALL)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert high_freq_share(out) >= 3 * before, (before, high_freq_share(out))  # measured: about 50x
    np.testing.assert_allclose(boxes, SMALL, atol=0.01)  # noise does not move boxes
    residual = out.astype(np.float64) - img
    assert 0.06 * 255 < residual.std() < 0.09 * 255  # sigma 0.08 on a 0..1 image, minus a little clipping


def test_window_crop_keeps_pixels_and_boxes_in_place_and_pads_the_rest():
    t = SizeAwareFrequencyAug(crop_p=1.0)
    window = (0.1, 0.2, 0.9, 1.0)
    boxes = np.array([[0.05, 0.3, 0.5, 0.6, 0, 0], [0.0, 0.0, 0.05, 0.1, 1, 1], [0.8, 0.9, 1.0, 1.0, 2, 2]])
    out = t.apply_to_bboxes(boxes, branch="crop", window=window)
    expected = np.array([[0.1, 0.3, 0.5, 0.6], [0.1, 0.2, 0.1, 0.2], [0.8, 0.9, 0.9, 1.0]])  # cut to the window
    np.testing.assert_allclose(out[:, :4], expected, atol=1e-6)
    img = natural_image(100)
    cropped = t.apply(img, branch="crop", window=window)
    np.testing.assert_array_equal(cropped[20:100, 10:90], img[20:100, 10:90])  # no resampling, no shift
    assert (cropped[:20] == 114).all() and (cropped[:, :10] == 114).all() and (cropped[:, 90:] == 114).all()
    # through Ultralytics' wrapper: the object inside the window keeps its pixel box exactly
    t.set_random_seed(0)
    result, kept = run(t, natural_image(), [[100, 100, 150, 150], [60, 60, 200, 220]])
    assert result.shape == (256, 256, 3) and (result == 114).any()
    np.testing.assert_allclose(kept[0], [100, 100, 150, 150], atol=0.5)


def test_crop_through_wrapper_cuts_boxes_to_the_window_and_drops_the_ones_it_leaves_out():
    img = natural_image()
    for seed in range(5):
        t = SizeAwareFrequencyAug(crop_p=1.0, crop_min_side=0.8)
        t.set_random_seed(seed)
        border = [[0, 0, 256, 256], [0, 100, 3, 110]]  # the full image, and a thin box on the left edge
        out, boxes = run(t, img, border)
        assert out.shape == img.shape and (boxes >= 0).all() and (boxes <= 256).all()
        x0, y0, x1, y1 = boxes[0].round().astype(int)  # the full-image box is now the window: its pixels are kept
        assert min(x1 - x0, y1 - y0) >= 0.8 * 256 - 1 and (x1 - x0, y1 - y0) != (256, 256)
        np.testing.assert_array_equal(out[y0:y1, x0:x1], img[y0:y1, x0:x1])
        assert len(boxes) == (1 if x0 >= 3 else 2)  # the edge box is dropped when the window leaves it out


@pytest.mark.parametrize("channels", [1, 3])
def test_no_labels_and_channels(channels):
    img = natural_image(channels=channels)
    out, boxes = run(SizeAwareFrequencyAug(noise_p=1.0, crop_p=1.0), img, np.zeros((0, 4)))
    assert np.array_equal(out, img) and len(boxes) == 0  # no objects: left alone
    out, _ = run(SizeAwareFrequencyAug(noise_p=1.0), img, SMALL)
    assert out.shape == img.shape and not np.array_equal(out, img)
    crop = SizeAwareFrequencyAug(crop_p=1.0, crop_min_side=0.8)  # window mode: a window kept in place, pad around it
    crop.set_random_seed(0)
    out, _ = run(crop, img, LARGE)
    kept, padded = np.all(out == img, axis=-1), np.all(out == PAD_VALUE, axis=-1)
    ys, xs = np.nonzero(kept & ~padded)
    window = np.zeros_like(kept)
    window[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    assert kept[window].all() and padded[~window].all() and not window.all()  # in every channel
    assert np.ptp(ys) + 1 >= 0.8 * 256 - 1 and np.ptp(xs) + 1 >= 0.8 * 256 - 1  # crop_min_side of each side


def test_serialisation_round_trip_and_seeding():
    t = SizeAwareFrequencyAug(small_object_area=0.01, noise_p=0.7, noise_sigma=0.05, crop_p=0.4, crop_min_side=0.9)
    d = A.to_dict(t)
    t2 = A.from_dict(d)
    assert isinstance(t2, SizeAwareFrequencyAug) and A.to_dict(t2) == d
    img = natural_image()
    comp = A.Compose([A.from_dict(d)], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["c"]), seed=3)
    comp2 = A.Compose([A.from_dict(d)], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["c"]), seed=3)
    comp3 = A.Compose([A.from_dict(d)], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["c"]), seed=4)
    a = [comp(image=img, bboxes=SMALL, c=[0, 1])["image"] for _ in range(6)]
    b = [comp2(image=img, bboxes=SMALL, c=[0, 1])["image"] for _ in range(6)]
    c = [comp3(image=img, bboxes=SMALL, c=[0, 1])["image"] for _ in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # same seed: same samples
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))  # another seed: other samples


def test_branch_counts_and_fractions():
    t = SizeAwareFrequencyAug(noise_p=1.0, crop_p=1.0)
    w = Albumentations(p=1.0, transforms=[t])
    inner = next(x for x in w.transform.transforms if isinstance(x, SizeAwareFrequencyAug))
    img = natural_image()
    for boxes in (SMALL, SMALL, LARGE, np.zeros((0, 4))):
        w(labels_for(img, boxes))
    assert inner.pop_branch_fractions() == {"none": 0.25, "noise": 0.5, "crop": 0.25}
    assert inner.pop_branch_fractions() == {"none": 0.0, "noise": 0.0, "crop": 0.0}


@pytest.mark.parametrize("kw", [{"noise_p": 1.5}, {"small_object_area": 0}, {"crop_min_side": 0}, {"noise_sigma": -1}])
def test_bad_arguments_named(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        SizeAwareFrequencyAug(**kw)


# ------------------------------------------------------------------------ on the source images (before mosaic)


def source_label(img, boxes_xyxy):
    """A label as Ultralytics' YOLODataset.get_image_and_label returns it: normalised xywh instances."""
    h, w = img.shape[:2]
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    xywh = np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2 / w,
            (boxes[:, 1] + boxes[:, 3]) / 2 / h,
            (boxes[:, 2] - boxes[:, 0]) / w,
            (boxes[:, 3] - boxes[:, 1]) / h,
        ],
        1,
    )
    return {
        "img": img.copy(),
        "cls": np.arange(len(boxes), dtype=np.float32).reshape(-1, 1),
        "instances": Instances(bboxes=xywh, segments=np.zeros((0, 1000, 2)), bbox_format="xywh", normalized=True),
    }


def test_source_stage_noises_an_all_small_source_image_and_keeps_its_labels():
    hook = SourceImageFrequency(None, SizeAwareFrequencyAug(noise_p=1.0, crop_p=1.0))
    img = natural_image()
    label = hook.apply(source_label(img, SMALL), random.Random(0))
    assert high_freq_share(label["img"]) > 3 * high_freq_share(img)
    inst = label["instances"]
    assert inst._bboxes.format == "xywh" and inst.normalized and len(inst) == 2
    assert np.allclose(inst.bboxes, source_label(img, SMALL)["instances"].bboxes)


def test_source_stage_window_crop_clips_boxes_and_drops_those_outside_with_their_class():
    hook = SourceImageFrequency(None, SizeAwareFrequencyAug(crop_p=1.0, crop_min_side=0.5))
    img = natural_image()
    boxes = [[60, 60, 200, 220], [2, 2, 12, 12], [240, 240, 254, 254]]  # one large, two tiny in opposite corners
    rng = random.Random(3)
    params = hook.transform.draw(np.array([[60, 60, 200, 220]]) / 256, random.Random(3))  # the same draws
    x0, y0, x1, y1 = (np.array(params["window"]) * 256).round().astype(int)
    label = hook.apply(source_label(img, boxes), rng)
    out = label["img"]
    assert (out[y0:y1, x0:x1] == img[y0:y1, x0:x1]).all() and (out[:y0] == 114).all() and (out[y1:] == 114).all()
    inst = label["instances"]
    inst.convert_bbox("xyxy")
    inst.denormalize(256, 256)
    inside = [
        (b[0] >= x0 - 1e-3) & (b[2] <= x1 + 1e-3) & (b[1] >= y0 - 1e-3) & (b[3] <= y1 + 1e-3) for b in inst.bboxes
    ]
    assert all(inside) and len(inst) == len(label["cls"]) and 1 <= len(inst) < 3
    assert 0.0 in label["cls"]  # the large box stays, cut to the window


class _Images:
    """The least of a dataset that SourceImageFrequency calls: get_image_and_label(index)."""

    def get_image_and_label(self, index):
        return source_label(natural_image(), [[60, 60, 200, 220]])


def test_source_stage_draws_from_its_own_stream_and_leaves_pythons_random_alone():
    """The hook takes no draw from `random` (so Ultralytics' mosaic and affine draw what they would without it) and
    its own stream repeats for the same state of `random`."""

    def run():
        dataset = _Images()
        hook = SourceImageFrequency(dataset, SizeAwareFrequencyAug(crop_p=0.5))
        random.seed(11)
        before = random.getstate()
        windows = [hash(hook(i)["img"].tobytes()) for i in range(12)]
        assert random.getstate() == before
        return windows

    first = run()
    assert first == run()
    assert len(set(first)) > 3  # cropped at different windows, and some not at all


def test_source_stage_stream_reset_follows_the_new_state_of_random():
    """After a resume reseeds `random`, reset_stream makes the hook draw from the new state, not replay the old."""

    def windows(hook, n=12):
        return [hash(hook(i)["img"].tobytes()) for i in range(n)]

    def fresh():
        return SourceImageFrequency(_Images(), SizeAwareFrequencyAug(crop_p=0.5))

    random.seed(5)
    first = windows(fresh())
    hook = fresh()
    random.seed(5)
    hook(0)  # drew once from the stream seeded at the first run's state
    random.seed(6)  # the resume reseeds
    hook.reset_stream()
    resumed = windows(hook)
    random.seed(6)
    assert resumed == windows(fresh()) and resumed != first


def test_source_stage_stream_is_the_same_in_another_process():
    """The stream depends on `random`'s state alone, not on anything that differs between processes."""
    code = (
        "import random\n"
        "from ikd_yolo.frequency import SourceImageFrequency, SizeAwareFrequencyAug\n"
        "random.seed(7)\n"
        "print(SourceImageFrequency(None, SizeAwareFrequencyAug()).rng().random())\n"
    )
    draws = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in "ab"
    }
    assert len(draws) == 1, draws


# ------------------------------------------------------------------------ the run's object (frequency_run)


def test_the_transform_takes_its_defaults_from_the_settings():
    """The freq_* settings are the one source of the transform's defaults (its own crop_p default was 1.0)."""
    from ikd_yolo.config import IKDConfig
    from ikd_yolo.frequency import build_transform

    assert A.to_dict(SizeAwareFrequencyAug()) == A.to_dict(build_transform(IKDConfig.from_mapping({})))


class _Loader:
    def __init__(self, dataset):
        self.dataset, self.resets = dataset, 0

    def reset(self):
        self.resets += 1


def test_the_run_object_attaches_reports_and_stops_once():
    """Hooked into the dataset, its epoch's fractions reported, and taken out once, when its epochs are over (the
    loader restarted, so that its workers drop their copies of the hook)."""
    from ikd_yolo.config import IKDConfig
    from ikd_yolo.frequency_run import FrequencyAugmentation

    freq = FrequencyAugmentation(IKDConfig.from_mapping({"freq_crop_p": 1.0}))
    dataset = _Images()
    loader = _Loader(dataset)
    freq.attach(dataset)
    dataset.get_image_and_label(0)  # one large object: the crop branch
    assert freq.pop_epoch_stats(dataset) == {"none": 0.0, "noise": 0.0, "crop": 1.0}
    assert freq.metrics() == {"freq/noise": 0.0, "freq/crop": 1.0}
    assert freq.start_epoch(True, loader) is False and SourceImageFrequency.installed(dataset) is not None
    assert freq.start_epoch(False, loader) is True and freq.start_epoch(False, loader) is False
    assert SourceImageFrequency.installed(dataset) is None and loader.resets == 1
    freq.attach(dataset)  # a dataset built after the stop is left alone
    assert SourceImageFrequency.installed(dataset) is None and freq.pop_epoch_stats(dataset) is None
    assert freq.metrics() == {"freq/noise": 0.0, "freq/crop": 0.0}
