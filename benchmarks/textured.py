"""The textured benchmark's data: real-photo textures, objects of several sizes, occlusion, crowding, and labels
written either exactly or as a human annotator writes them.

Nothing may be downloaded, so the photographs are the ones scikit-image ships in its wheel (``skimage.data``:
astronaut, coffee, the cat Chelsea, a rocket, a motorcycle, coins, tissue and retina micrographs, grass, gravel,
brick, the moon, the Hubble deep field, ...) and the faces of its LFW subset; scikit-image is a benchmark-only
dependency (``pip install -e ".[bench]"``).

An image is a crop of a background photograph (rescaled, flipped, tinted) with objects of four classes pasted on
it. Each class has its own shape and its own texture source: ``face`` (an LFW face in an oval), ``disc`` (metal:
coins, rocket, motorcycle), ``box`` (a rotated rectangle of fur and fabric) and ``triangle`` (food and tissue).
Non-face LFW patches and irregular textured blobs are pasted as distractors. Objects are placed one after another,
so later ones occlude earlier ones (every object keeps at least ``MIN_VISIBLE`` of its area visible); the exact box
is the box of the object's visible pixels. Three layouts: a crowd of small objects (every object small, so the
frequency augmentation's noise branch can fire), a mix of medium/large and small objects, and a few large ones.
The camera's part: a slight blur on some images, sensor noise, and JPEG compression.

Sizes are COCO's at training resolution (:data:`SMALL_AREA`, :data:`MEDIUM_AREA` of the image area, COCO's 32² and
96² px at 640²).

Labels (``labels=``): ``exact`` writes the visible boxes of every object; ``annotator`` writes them as an annotator
does (:func:`annotate`), with misses that depend on size, occlusion and crowding and a box error with a systematic,
class-dependent part. The same draw applies to every split (train, val, test): a user's own val and test labels come
from the same annotators as the training labels. The images do not depend on ``labels``: the annotator draws from a
random stream of its own, so the exact and the annotator regimes hold the same images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES = ("face", "disc", "box", "triangle")
SMALL_AREA = 0.0025  # fraction of the image area: COCO's 32^2 at 640^2
MEDIUM_AREA = 0.09  # COCO's 96^2 at 640^2
MIN_VISIBLE = 0.4  # a placement that would leave an earlier object less visible than this is redrawn
SPLITS = ("train", "val", "test")
VERSION = 2  # bump when the generator's output changes: cached datasets are rebuilt

# texture sources of each class, and of the backgrounds (names of skimage.data functions; "lfw" is the LFW subset)
CLASS_TEXTURES = {
    "face": ("lfw_faces",),
    "disc": ("coins", "rocket", "motorcycle"),
    "box": ("chelsea", "astronaut", "grace_hopper"),
    "triangle": ("coffee", "immunohistochemistry", "retina"),
}
BACKGROUNDS = ("camera", "brick", "grass", "gravel", "moon", "page", "text", "hubble_deep_field", "cell", "clock")


@dataclass(frozen=True)
class Annotator:
    """How an annotator's labels depart from the truth (:func:`annotate`). Sources, one per rate, in
    docs/benchmark_data.md; the values marked there as interpolations or assumptions are ours.

    Misses: an object is left unlabelled with probability ``miss_small``, ``miss_medium`` or ``miss_large`` by its
    COCO size, times ``1 + miss_occlusion x`` its occluded fraction (at most ``miss_max``); crowding does not add
    misses (it adds gross box errors). Boxes: each edge moves outwards by the class's systematic bias (``bias``:
    left, top, right, bottom, fractions of the object's side; negative = inwards) plus a Gaussian error of standard
    deviation ``sqrt(edge_px^2 + (edge_sd x side)^2)``, ``edge_px`` in fractions of the image side; with probability
    ``gross`` (``gross_crowded`` in a crowd) the error's deviation is ``gross_sd`` of the side instead. A label takes
    another class with probability ``swap``.
    """

    miss_small: float = 0.30
    miss_medium: float = 0.08
    miss_large: float = 0.02
    miss_occlusion: float = 2.0
    miss_max: float = 0.95
    edge_px: float = 1.3 / 640  # 1.3 px at 640 px
    edge_sd: float = 0.015
    gross: float = 0.06
    gross_crowded: float = 0.15
    gross_sd: float = 0.15
    swap: float = 0.005
    # face: as people are drawn (top +4 %, bottom +1 %, one side +7 %); disc and box: compact, +1.5 % all round;
    # triangle: the thin apex left out (top edge 5 % inwards)
    bias: tuple[tuple[float, float, float, float], ...] = (
        (0.0, 0.04, 0.07, 0.01),
        (0.015, 0.015, 0.015, 0.015),
        (0.015, 0.015, 0.015, 0.015),
        (0.0, -0.05, 0.0, 0.0),
    )


@dataclass
class Obj:
    """One object as drawn: class, exact visible box (x1, y1, x2, y2 px), occluded fraction, crowd flag."""

    cls: int
    box: tuple[float, float, float, float]
    occluded: float = 0.0
    crowded: bool = False


@cache
def _photo(name: str) -> np.ndarray:
    """A bundled photograph as uint8 RGB (grey ones repeated to three channels)."""
    import skimage.data as sd

    if name == "grace_hopper":
        import matplotlib

        img = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))[..., ::-1]
    elif name == "motorcycle":
        img = sd.stereo_motorcycle()[0]
    elif name == "lfw_faces":
        img = sd.lfw_subset()[:100]  # (100, 25, 25) float faces; the other 100 are not faces
    elif name == "lfw_nonfaces":
        img = sd.lfw_subset()[100:]
    else:
        img = getattr(sd, name)()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img * 255, 0, 255).astype(np.uint8)
    return img if img.ndim == 4 or (img.ndim == 3 and img.shape[-1] == 3) else np.repeat(img[..., None], 3, -1)


def _texture(rng: np.random.Generator, name: str, w: int, h: int) -> np.ndarray:
    """A ``h`` x ``w`` RGB patch of photograph ``name``: a random window at a random scale, flipped, tinted."""
    src = _photo(name)
    if src.ndim == 4:  # a stack of LFW patches: one whole patch
        patch = src[rng.integers(len(src))]
    else:
        sh, sw = src.shape[:2]
        side = rng.uniform(0.15, 0.6) * min(sh, sw)
        ph, pw = int(max(8, min(sh, side * h / max(w, h)))), int(max(8, min(sw, side * w / max(w, h))))
        y, x = rng.integers(0, sh - ph + 1), rng.integers(0, sw - pw + 1)
        patch = src[y : y + ph, x : x + pw]
    patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA if patch.shape[1] > w else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    gain = rng.uniform(0.75, 1.25, 3) * rng.uniform(0.8, 1.2)
    return np.clip(patch.astype(np.float32) * gain + rng.uniform(-20, 20), 0, 255)


def _mask(rng: np.random.Generator, cls: int, w: int, h: int) -> np.ndarray:
    """The class's shape in a ``h`` x ``w`` box as float coverage in [0, 1], anti-aliased (4x supersampled)."""
    s = 4
    m = np.zeros((h * s, w * s), np.uint8)
    W, H = w * s, h * s
    if cls in (0, 1):  # face: an oval; disc: an ellipse
        cv2.ellipse(m, (W // 2, H // 2), (max(1, W // 2 - 1), max(1, H // 2 - 1)), 0, 0, 360, 255, -1)
    elif cls == 2:  # a rectangle rotated by up to 20 degrees, inscribed in the box
        a = np.deg2rad(rng.uniform(-20, 20))
        c, si = abs(np.cos(a)), abs(np.sin(a))
        rw, rh = (W * c - H * si) / max(c * c - si * si, 0.3), (H * c - W * si) / max(c * c - si * si, 0.3)
        rect = ((W / 2, H / 2), (max(4.0, min(rw, W)), max(4.0, min(rh, H))), float(np.rad2deg(a)))
        cv2.fillPoly(m, [cv2.boxPoints(rect).astype(np.int32)], 255)
    else:  # triangle, apex up, apex jittered sideways
        apex = rng.uniform(0.3, 0.7) * W
        cv2.fillPoly(m, [np.array([[apex, 0], [0, H - 1], [W - 1, H - 1]], np.int32)], 255)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _blob_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """An irregular polygon filling most of a ``h`` x ``w`` box (a distractor's shape)."""
    m = np.zeros((h, w), np.uint8)
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.5, 1.0, n)
    pts = np.stack([(1 + r * np.cos(ang)) * (w - 1) / 2, (1 + r * np.sin(ang)) * (h - 1) / 2], 1)
    cv2.fillPoly(m, [pts.astype(np.int32)], 255)
    return m.astype(np.float32) / 255


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A crop of a background photograph at ``size`` x ``size``, float RGB."""
    img = _texture(rng, BACKGROUNDS[rng.integers(len(BACKGROUNDS))], size, size)
    if rng.random() < 0.5:
        img = img[::-1]
    return np.ascontiguousarray(img)


def _sides(rng: np.random.Generator, size: int) -> tuple[list[float], bool]:
    """Object sides (px) of one image by its layout, and whether the small ones are crowded around a few points."""
    small = (0.036 * size, np.sqrt(SMALL_AREA) * size * 0.97)
    medium = (np.sqrt(SMALL_AREA) * size * 1.05, np.sqrt(MEDIUM_AREA) * size)
    large = (np.sqrt(MEDIUM_AREA) * size * 1.05, 0.6 * size)
    layout = rng.choice(3, p=(0.25, 0.55, 0.2))
    if layout == 0:  # a crowd of small objects only
        return [rng.uniform(*small) for _ in range(rng.integers(3, 10))], True
    if layout == 1:  # medium and large objects with small ones around
        big = [rng.uniform(*(medium if rng.random() < 0.6 else large)) for _ in range(rng.integers(1, 4))]
        return big + [rng.uniform(*small) for _ in range(rng.integers(0, 4))], rng.random() < 0.5
    return [rng.uniform(*large) for _ in range(rng.integers(1, 3))] + [
        rng.uniform(*medium) for _ in range(rng.integers(0, 3))
    ], False


def _paste(img: np.ndarray, owner: np.ndarray, tex: np.ndarray, cover: np.ndarray, x: int, y: int, oid: int) -> None:
    """Composite a texture with its coverage at (x, y), with a soft shadow, and record which pixels it owns."""
    h, w = cover.shape
    shadow = cv2.GaussianBlur(cover, (0, 0), max(0.8, 0.06 * max(w, h)))[..., None] * 0.35
    ys, xs = slice(y + 1, min(img.shape[0], y + 1 + h)), slice(x + 1, min(img.shape[1], x + 1 + w))
    img[ys, xs] *= 1 - shadow[: ys.stop - ys.start, : xs.stop - xs.start]
    a = cover[..., None]
    img[y : y + h, x : x + w] = a * tex + (1 - a) * img[y : y + h, x : x + w]
    if oid >= 0:
        owner[y : y + h, x : x + w][cover > 0.5] = oid
    else:  # a distractor hides what it covers
        owner[y : y + h, x : x + w][cover > 0.5] = -1


def _place(rng, size, side, aspect, centres, spread) -> tuple[int, int, int, int]:
    """Box (x, y, w, h) of a new object: near one of ``centres`` (a crowd) or anywhere."""
    w = int(np.clip(round(side * np.sqrt(aspect)), 3, size - 2))
    h = int(np.clip(round(side / np.sqrt(aspect)), 3, size - 2))
    if centres:
        cx, cy = centres[rng.integers(len(centres))] + rng.normal(0, spread, 2)
    else:
        cx, cy = rng.uniform(0, size, 2)
    x = int(np.clip(cx - w / 2, 0, size - w))
    y = int(np.clip(cy - h / 2, 0, size - h))
    return x, y, w, h


def sample_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[Obj]]:
    """One image (uint8 BGR, ``size`` x ``size``) and its objects with their exact visible boxes."""
    img = _background(rng, size)
    owner = np.full((size, size), -1, np.int32)  # which object each pixel shows
    full_area: list[float] = []
    classes: list[int] = []
    sides, crowd = _sides(rng, size)
    centres = [rng.uniform(0.15, 0.85, 2) * size for _ in range(rng.integers(1, 4))] if crowd else []
    for _ in range(rng.integers(0, 4)):  # distractors first, so objects may occlude them
        side = rng.uniform(0.03, 0.25) * size
        x, y, w, h = _place(rng, size, side, rng.uniform(0.6, 1.6), [], 0)
        nonface = rng.random() < 0.4
        tex = _texture(rng, "lfw_nonfaces" if nonface else rng.choice(CLASS_TEXTURES["box"] + BACKGROUNDS), w, h)
        _paste(img, owner, tex, _blob_mask(rng, w, h), x, y, -1)
    for side in sorted(sides, reverse=True):  # large first: small ones land on top of them, as in crowds
        cls = int(rng.integers(len(CLASS_NAMES)))
        aspect = rng.uniform(0.8, 1.25) if cls == 0 else rng.uniform(0.6, 1.6)
        for _ in range(20):
            small = side * side < SMALL_AREA * size * size
            x, y, w, h = _place(rng, size, side, aspect, centres if small else [], 0.08 * size)
            cover = _mask(rng, cls, w, h)
            trial = owner.copy()
            trial[y : y + h, x : x + w][cover > 0.5] = len(classes)
            if all((trial == i).sum() >= MIN_VISIBLE * a for i, a in enumerate(full_area)):
                break
        else:
            continue
        tex = _texture(rng, CLASS_TEXTURES[CLASS_NAMES[cls]][rng.integers(len(CLASS_TEXTURES[CLASS_NAMES[cls]]))], w, h)
        _paste(img, owner, tex, cover, x, y, len(classes))
        full_area.append(float((cover > 0.5).sum()))
        classes.append(cls)
    img = _camera(rng, img)
    return img, _objects(owner, classes, full_area)


def _camera(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """What a camera adds: a slight defocus on some images, and sensor noise (JPEG comes at writing)."""
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
    img = img + rng.normal(0, rng.uniform(1, 4), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)[..., ::-1].copy()  # RGB -> BGR for cv2.imwrite


def _objects(owner: np.ndarray, classes: list[int], full_area: list[float]) -> list[Obj]:
    """Each object's visible box, occluded fraction and crowd flag, from the pixel owner map."""
    objs = []
    for i, cls in enumerate(classes):
        ys, xs = np.nonzero(owner == i)
        if len(xs) == 0:
            continue
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        objs.append(Obj(cls, box, occluded=1.0 - len(xs) / max(full_area[i], 1.0)))
    for o in objs:
        side = np.sqrt((o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
        c = np.array([(o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2])
        near = sum(
            np.hypot(*(c - [(p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2])) < 2 * side
            for p in objs
            if p is not o
        )
        o.crowded = near >= 2
    return objs


def annotate(rng: np.random.Generator, objs: list[Obj], size: int, ann: Annotator) -> list[Obj]:
    """The labels an annotator writes for ``objs``: some missed, every box moved by a biased and a random error.

    Every object draws the same random values whether it is missed or not, so one object's fate does not shift the
    next one's draws.
    """
    out = []
    for o in objs:
        w, h = o.box[2] - o.box[0], o.box[3] - o.box[1]
        area = w * h / size**2
        p = ann.miss_small if area < SMALL_AREA else ann.miss_medium if area < MEDIUM_AREA else ann.miss_large
        missed = rng.random() < min(ann.miss_max, p * (1 + ann.miss_occlusion * o.occluded))
        side = np.sqrt(w * h)
        gross = rng.random() < (ann.gross_crowded if o.crowded else ann.gross)
        sd = ann.gross_sd * side if gross else np.hypot(ann.edge_px * size, ann.edge_sd * side)
        err = np.array(ann.bias[o.cls]) * side + rng.normal(0, sd, 4)
        cls = int(rng.integers(len(CLASS_NAMES) - 1))
        cls = (o.cls + 1 + cls) % len(CLASS_NAMES) if rng.random() < ann.swap else o.cls
        if missed:
            continue
        x1, y1, x2, y2 = np.clip(np.array(o.box) + err * np.array([-1, -1, 1, 1]), 0, size)
        if x2 - x1 < 0.3 * w or y2 - y1 < 0.3 * h:  # turned inside out: the annotator's box is the exact one
            x1, y1, x2, y2 = o.box
        out.append(Obj(cls, (float(x1), float(y1), float(x2), float(y2)), o.occluded, o.crowded))
    return out


def yolo_lines(objs: list[Obj], size: int) -> str:
    """YOLO label text (cls xc yc w h, normalised) of ``objs``."""
    rows = []
    for o in objs:
        x1, y1, x2, y2 = (v / size for v in o.box)
        rows.append(f"{o.cls} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
    return "\n".join(rows) + ("\n" if rows else "")


def make_textured_dataset(
    root: str | Path,
    counts: dict[str, int],
    imgsz: int = 160,
    seed: int = 0,
    labels: str = "exact",
    annotator: Annotator | None = None,
) -> Path:
    """Write (or reuse) a textured dataset under ``root`` and return its data yaml.

    Args:
        root: Folder that receives ``images/<split>``, ``labels/<split>`` and ``data.yaml``.
        counts: Images per split, e.g. ``{"train": 400, "val": 200, "test": 400}`` (any of train, val, test).
        imgsz: Side of the square images in pixels.
        seed: Generator seed; each split draws from a stream of its own (``[seed, split index]``).
        labels: ``exact`` or ``annotator`` (:func:`annotate`, with ``annotator``'s rates; the default ones if None).
    """
    if labels not in ("exact", "annotator"):
        raise ValueError(f"labels={labels!r}: use exact or annotator")
    ann = annotator or Annotator()
    root = Path(root).resolve()
    params = dict(counts=counts, imgsz=imgsz, seed=seed, labels=labels, v=VERSION)
    if labels == "annotator":
        params["annotator"] = asdict(ann)
    yaml_path, stamp = root / "data.yaml", root / "params.json"
    if yaml_path.exists() and stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(params)):
        return yaml_path
    stats = {}
    for k, split in enumerate(SPLITS):
        if not counts.get(split):
            continue
        rng, label_rng = np.random.default_rng([seed, k]), np.random.default_rng([seed, k, 1])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        n_obj = n_lab = n_small_only = 0
        for i in range(counts[split]):
            img, objs = sample_image(rng, imgsz)
            quality = int(rng.integers(70, 96))
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            written = annotate(label_rng, objs, imgsz, ann) if labels == "annotator" else objs
            (root / "labels" / split / f"{i:05d}.txt").write_text(yolo_lines(written, imgsz))
            areas = [(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) / imgsz**2 for o in objs]
            n_obj, n_lab = n_obj + len(objs), n_lab + len(written)
            n_small_only += bool(areas) and max(areas) < SMALL_AREA
        stats[split] = dict(images=counts[split], objects=n_obj, labels=n_lab, all_small_images=n_small_only)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))
    splits = "".join(f"{s}: images/{s}\n" for s in SPLITS if counts.get(s))
    yaml_path.write_text(f"path: {root}\n{splits}names:\n{names}\n")
    (root / "stats.json").write_text(json.dumps(stats, indent=1))
    stamp.write_text(json.dumps(params))
    return yaml_path
