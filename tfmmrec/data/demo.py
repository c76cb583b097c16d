"""The built-in demo catalog: a synthetic multimodal shop whose ground truth is known.

``write_demo_catalog(out_dir)`` writes a complete dataset directory (see
:mod:`tfmmrec.data.manifest`) so every part of the library can be exercised and *checked*
without downloads. It is generated as follows; each piece exists for a reason:

* **Latent item attributes** -- category (8), colour (8 hues), style (6) and tempo (a bpm
  in 60-180, grouped into 4 levels for taste). These are what users actually like; they are
  saved in ``latent/items.csv`` so diagnostics can ask "did the model learn the truth?".
* **Popularity** -- a Zipf-like base popularity (``rank ** -0.8`` over a random ranking), so
  the log has the popularity bias of real data and an ID-only / popularity model is a
  competitive baseline on warm items rather than a straw man.
* **Each modality reveals a different, noisy subset of the attributes**, so fusing
  modalities beats any single one:

  - *text* (title + description) names the category and style through several synonyms plus
    filler words; ~15% of items omit the category word and ~20% omit the style word.
  - *image* (``image_size`` square RGB PNG): the dominant hue is the colour (with jitter),
    the shape is the category (circle, square, triangle, stripes, ring, cross, diamond, bars),
    the background texture is the style; plus pixel noise. Colour is visible *only* here.
  - *audio* (WAV, ``audio_seconds`` long, 16-bit PCM): the pulse rate is ``2 * bpm / 60`` Hz,
    the pitch is the style and the harmonic richness weakly encodes the category; plus
    noise. Tempo is audible *only* here. Most clips are 16 kHz mono, ~10% 22050 Hz stereo and
    ~5% 8 kHz mono so the library's resampling / down-mixing path is exercised.
  - *brand* (categorical, weakly tied to style) and *price* (float, set by category and style).

* **Missing and broken media** -- ~8% of items have no image, ~8% no audio and ~3% no text
  (title and description both empty), because real catalogs are incomplete and the library
  must handle absent modalities. Exactly one PNG is corrupt (valid signature and header, then
  an IDAT chunk cut in half) and exactly one WAV is truncated (its header claims more frames
  than the file holds); both are picked deterministically from ``seed`` and exist to show the
  library's decode report. Their ids are listed in ``latent/items.csv`` (``corrupt`` column).
* **Users** -- a sparse taste vector: each user likes one or two values of each attribute
  (one tempo level), with strengths category > colour = style > tempo scaled by a per-user
  factor, and a per-user popularity sensitivity ``beta``. A user's region is weakly tied to
  their favourite style (a cold-start user feature). Saved in ``latent/users.csv``.
* **Interactions** -- implicit feedback. A user's count is lognormal with mean
  ``n_interactions / n_users`` (minimum 5), rescaled so the total is close to the request.
  The user picks distinct items with probability proportional to
  ``exp(taste . attributes + beta * log popularity)`` -- sampled without replacement with the
  Gumbel top-k trick -- and the picks are timestamped in random order at increasing times
  within 2023. Taste is spread over all four attributes and popularity matters, so a user's
  favourite category covers roughly 30-50% of their interactions, not all of them: content
  carries real signal for never-seen items, yet an ID-only model stays competitive.

Everything is drawn from ``numpy.random.default_rng(seed)`` (one spawned stream per stage),
files are written in item order, and no clock or hash order is consulted, so the same seed
gives byte-identical files. PNGs and WAVs are written with numpy + zlib/struct and the stdlib
``wave`` module, so no imaging or audio library is needed.
"""
from __future__ import annotations

import struct
import time
import wave
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tfmmrec.data.manifest import Manifest, ModalitySpec

N_CAT, N_COLOUR, N_STYLE, N_TEMPO = 8, 8, 6, 4
CATEGORIES = [["lamp", "light", "lantern"], ["chair", "seat", "stool"], ["mug", "cup", "tumbler"],
              ["bag", "backpack", "tote"], ["jacket", "coat", "parka"], ["clock", "timepiece", "watch"],
              ["speaker", "radio", "boombox"], ["vase", "planter", "pot"]]
STYLES = [["vintage", "retro", "classic"], ["minimal", "clean", "simple"], ["rustic", "earthy", "handmade"],
          ["futuristic", "sleek", "techno"], ["playful", "whimsical", "quirky"], ["elegant", "luxe", "refined"]]
FILLERS = ["great gift", "ships fast", "limited edition", "best seller", "new arrival", "customer favourite",
           "easy to clean", "built to last", "for everyday use", "made with care", "perfect for home"]
TITLE_ADJ = ["The", "Our", "Everyday", "Signature", "Essential", "Original"]
BRANDS = [f"brand_{c}" for c in "abcdefghijkl"]
REGIONS = ["north", "south", "east", "west", "central", "islands"]
STYLE_PITCH_HZ = np.array([196.0, 247.0, 294.0, 370.0, 440.0, 554.0])
CAT_PRICE = np.array([40.0, 120.0, 12.0, 60.0, 150.0, 80.0, 90.0, 30.0])
STYLE_PRICE = np.array([1.1, 1.0, 0.9, 1.3, 0.8, 1.6])
TASTE_STRENGTH = {"category": 1.7, "colour": 1.3, "style": 1.3, "tempo": 1.0}
START_TS, YEAR_S = 1672531200, 365 * 86400  # 2023-01-01 UTC


def _png_bytes(img: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as PNG: signature, IHDR, one IDAT (filter 0), IEND."""
    h, w, _ = img.shape
    raw = np.zeros((h, 1 + w * 3), np.uint8)
    raw[:, 1:] = img.reshape(h, w * 3)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def _write_wav(path: Path, x: np.ndarray, rate: int, truncate: bool = False) -> None:
    """Write float samples (frames, channels) in [-1, 1] as 16-bit PCM; ``truncate`` cuts the
    data to a third while the header keeps claiming the full length."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(pcm.shape[1])
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.tobytes())
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: 44 + (len(data) - 44) // 3])


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB (all in [0, 1]); returns shape h.shape + (3,)."""
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _render_images(rng: np.random.Generator, cat: np.ndarray, hue: np.ndarray, style: np.ndarray,
                   size: int) -> np.ndarray:
    """Render a batch of images as uint8 (B, size, size, 3): shape <- category, hue <- colour,
    background texture <- style, plus jittered position/size/saturation and pixel noise."""
    b = len(cat)
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    cx, cy = (rng.uniform(-0.2, 0.2, (2, b, 1, 1)))
    r = rng.uniform(0.45, 0.7, (b, 1, 1))
    x, y = grid[None, None, :] - cx, grid[None, :, None] - cy
    ax, ay, inside = np.abs(x), np.abs(y), (np.abs(x) < r) & (np.abs(y) < r)
    dist = np.sqrt(x * x + y * y)
    masks = np.stack([
        dist < r,                                                   # circle
        np.maximum(ax, ay) < 0.85 * r,                              # square
        (y < 0.8 * r) & (ax < 0.55 * (y + r)),                      # triangle
        inside & (np.floor((y + 2.0) * 6.0) % 2 == 0),              # horizontal stripes
        (dist < r) & (dist > 0.55 * r),                             # ring
        ((ax < r) & (ay < 0.3 * r)) | ((ay < r) & (ax < 0.3 * r)),  # cross
        ax + ay < r,                                                # diamond
        inside & (np.floor((x + 2.0) * 5.0) % 2 == 0),              # vertical bars
    ])[cat, np.arange(b)]
    gx, gy = np.broadcast_to(grid[None, :], (size, size)), np.broadcast_to(grid[:, None], (size, size))
    textures = np.stack([
        np.full((size, size), 0.85),                                            # flat light
        0.55 + 0.4 * (gy + 1.0) / 2.0,                                          # vertical gradient
        0.7 + 0.2 * ((np.floor((gx + 1) * 4) + np.floor((gy + 1) * 4)) % 2),   # checker
        0.7 + 0.2 * (np.floor((gx + gy + 2) * 5) % 2),                          # diagonal lines
        0.85 - 0.3 * (np.sin(gx * 12) * np.sin(gy * 12) > 0.5),                # dots
        np.full((size, size), 0.3),                                             # flat dark
    ])
    fg = _hsv_to_rgb(hue, rng.uniform(0.6, 1.0, b), rng.uniform(0.65, 1.0, b))[:, None, None, :]
    img = np.where(masks[..., None], fg, textures[style][..., None])
    img = img + rng.normal(0.0, 0.05, img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _render_audio(rng: np.random.Generator, rate: int, channels: int, seconds: float, bpm: float,
                  style: int, cat: int) -> np.ndarray:
    """One clip (frames, channels): decaying pulses at 2*bpm/60 Hz on a tone whose pitch is the
    style and whose harmonic richness is the category (mod 4), plus noise."""
    t = np.arange(int(round(rate * seconds))) / rate
    f0 = STYLE_PITCH_HZ[style] * rng.uniform(0.98, 1.02)
    rich = (0.1, 0.3, 0.5, 0.7)[cat % 4]
    tone = sum(rich ** k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(4))
    env = np.exp(-6.0 * ((t * 2.0 * bpm / 60.0 + rng.uniform()) % 1.0))
    mono = 0.5 * env * tone / (1.0 + rich + rich**2 + rich**3)
    x = np.stack([mono * g for g in (1.0, 0.8)[:channels]], axis=1)
    return x + rng.normal(0.0, 0.03, x.shape)


def _items(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Latent attributes, popularity, which modalities exist, text, brand and price."""
    cat, colour, style = rng.integers(0, N_CAT, n), rng.integers(0, N_COLOUR, n), rng.integers(0, N_STYLE, n)
    bpm = rng.uniform(60.0, 180.0, n)
    pop = np.empty(n)
    pop[rng.permutation(n)] = np.arange(1, n + 1) ** -0.8
    has_text, has_image, has_audio = rng.random(n) >= 0.03, rng.random(n) >= 0.08, rng.random(n) >= 0.08
    say_cat, say_style = rng.random(n) >= 0.15, rng.random(n) >= 0.20
    titles, descs = [], []
    for i in range(n):
        cw, sw = CATEGORIES[cat[i]][rng.integers(3)], STYLES[style[i]][rng.integers(3)]
        f1, f2 = (FILLERS[j] for j in rng.choice(len(FILLERS), 2, replace=False))
        noun = cw if say_cat[i] else "piece"
        adj = sw if say_style[i] else TITLE_ADJ[rng.integers(len(TITLE_ADJ))]
        title = f"{adj} {noun} {rng.integers(1, 100)}".capitalize()
        desc = f"A {sw + ' ' if say_style[i] else ''}{noun}, {f1}. {f2.capitalize()}."
        titles.append(title if has_text[i] else "")
        descs.append(desc if has_text[i] else "")
    brand_home = rng.random(n) < 0.35  # weak style -> brand tie
    brand = np.where(brand_home, 2 * style + rng.integers(0, 2, n), rng.integers(0, len(BRANDS), n))
    price = np.round(CAT_PRICE[cat] * STYLE_PRICE[style] * rng.lognormal(0.0, 0.3, n), 2)
    return pd.DataFrame({"category": cat, "colour": colour, "style": style, "tempo_level":
                         np.minimum(((bpm - 60.0) // 30.0).astype(int), N_TEMPO - 1), "bpm": bpm,
                         "popularity": pop / pop.sum(), "has_text": has_text, "has_image": has_image,
                         "has_audio": has_audio, "title": titles, "description": descs,
                         "brand": np.array(BRANDS)[brand], "price": price})


def _tastes(rng: np.random.Generator, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse taste matrix (users, 8+8+6+4) over one-hot attributes, and popularity betas."""
    blocks = []
    for name, size in zip(TASTE_STRENGTH, (N_CAT, N_COLOUR, N_STYLE, N_TEMPO)):
        t = np.zeros((n_users, size))
        for u in range(n_users):
            k = 1 if name == "tempo" or rng.random() < 0.6 else 2
            t[u, rng.choice(size, k, replace=False)] = [1.0, 0.6][:k]
        blocks.append(TASTE_STRENGTH[name] * t)
    scale = rng.lognormal(0.0, 0.2, (n_users, 1))
    return np.concatenate(blocks, axis=1) * scale, rng.uniform(0.5, 1.2, n_users)


def _counts(rng: np.random.Generator, n_users: int, total: int, cap: int) -> np.ndarray:
    """Lognormal per-user counts (min 5, max ``cap``) rescaled so their sum is near ``total``."""
    raw = rng.lognormal(-0.5 * 0.7**2, 0.7, n_users)
    scale = total / n_users
    for _ in range(20):
        counts = np.clip(np.round(raw * scale), 5, cap).astype(int)
        scale *= total / max(counts.sum(), 1)
    return counts


def write_demo_catalog(out_dir: str | Path, *, n_items: int = 2000, n_users: int = 1500,
                       n_interactions: int = 60000, seed: int = 0, image_size: int = 64,
                       audio_seconds: float = 1.0, progress: bool = False) -> Path:
    """Write the synthetic demo dataset (see the module docstring) into ``out_dir``.

    Returns the directory path. Same arguments -> byte-identical files.
    """
    out = Path(out_dir)
    for sub in ("images", "audio", "latent"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    r_items, r_users, r_inter, r_img, r_audio, r_bad = np.random.default_rng(seed).spawn(6)
    items = _items(r_items, n_items)
    iw, uw = max(5, len(str(n_items - 1))), max(4, len(str(n_users - 1)))
    item_ids = np.array([f"i{i:0{iw}d}" for i in range(n_items)])
    user_ids = np.array([f"u{u:0{uw}d}" for u in range(n_users)])
    has_img, has_aud = items["has_image"].to_numpy(), items["has_audio"].to_numpy()
    idx = np.arange(n_items)
    png_pool = np.flatnonzero(has_img)
    bad_png = int(r_bad.choice(png_pool)) if len(png_pool) else -1
    wav_pool = np.flatnonzero(has_aud & (idx != bad_png))  # two different items
    bad_wav = int(r_bad.choice(wav_pool)) if len(wav_pool) else -1
    t0 = time.perf_counter()

    def report(stage: str, done: int) -> None:
        if progress:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"demo {stage}: {done}/{n_items} items ({rate:.0f} items/s)", flush=True)

    cat, style = items["category"].to_numpy(), items["style"].to_numpy()
    hue = (items["colour"].to_numpy() / N_COLOUR + r_img.normal(0.0, 0.02, n_items)) % 1.0
    for lo in range(0, n_items, 256):  # render every item (fixed rng use), write those with images
        sl = slice(lo, min(lo + 256, n_items))
        imgs = _render_images(r_img, cat[sl], hue[sl], style[sl], image_size)
        for j, i in enumerate(range(sl.start, sl.stop)):
            if has_img[i]:
                data = _png_bytes(imgs[j])
                if i == bad_png:  # keep signature + IHDR + half of the IDAT chunk
                    data = data[: 33 + 8 + (len(data) - 33 - 8 - 12) // 2]
                (out / "images" / f"{item_ids[i]}.png").write_bytes(data)
        report("images", sl.stop)
    t0 = time.perf_counter()
    fmt = r_audio.random(n_items)
    bpm = items["bpm"].to_numpy()
    for i in range(n_items):
        rate, ch = (22050, 2) if fmt[i] < 0.10 else (8000, 1) if fmt[i] < 0.15 else (16000, 1)
        clip = _render_audio(r_audio, rate, ch, audio_seconds, bpm[i], style[i], cat[i])
        if has_aud[i]:
            _write_wav(out / "audio" / f"{item_ids[i]}.wav", clip, rate, truncate=i == bad_wav)
        if (i + 1) % 500 == 0 or i + 1 == n_items:
            report("audio", i + 1)

    taste, beta = _tastes(r_users, n_users)
    cap = max(5, min(n_items // 2, 20 * n_interactions // max(n_users, 1)))
    counts = _counts(r_inter, n_users, n_interactions, cap)
    groups = (("category", N_CAT), ("colour", N_COLOUR), ("style", N_STYLE), ("tempo_level", N_TEMPO))
    onehot = np.concatenate([np.eye(n)[items[c].to_numpy()] for c, n in groups], axis=1)
    logpop = np.log(items["popularity"].to_numpy())
    rows_u, rows_i, rows_t = [], [], []
    for lo in range(0, n_users, 256):
        hi = min(lo + 256, n_users)
        scores = taste[lo:hi] @ onehot.T + beta[lo:hi, None] * logpop[None, :]
        scores += r_inter.gumbel(size=scores.shape)
        for u in range(lo, hi):
            k = min(int(counts[u]), n_items)
            picked = r_inter.permutation(np.sort(np.argpartition(-scores[u - lo], k - 1)[:k]))
            span = r_inter.uniform(0.2, 1.0) * YEAR_S
            start = START_TS + int(r_inter.uniform(0.0, YEAR_S - span))
            ts = start + np.sort(r_inter.integers(0, int(span), k)) + np.arange(k)
            rows_u.append(np.full(k, u))
            rows_i.append(picked)
            rows_t.append(ts)
    uu, ii, tt = np.concatenate(rows_u), np.concatenate(rows_i), np.concatenate(rows_t)

    table = pd.DataFrame({"item_id": item_ids, "title": items["title"], "description": items["description"],
                          "image_path": np.where(has_img, [f"images/{i}.png" for i in item_ids], ""),
                          "audio_path": np.where(has_aud, [f"audio/{i}.wav" for i in item_ids], ""),
                          "brand": items["brand"], "price": items["price"]})
    table.to_csv(out / "items.csv", index=False, float_format="%.2f")
    pd.DataFrame({"user_id": user_ids[uu], "item_id": item_ids[ii], "timestamp": tt}).to_csv(
        out / "interactions.csv", index=False)
    fav_style = taste[:, N_CAT + N_COLOUR:N_CAT + N_COLOUR + N_STYLE].argmax(1)
    region = np.where(r_users.random(n_users) < 0.4, fav_style, r_users.integers(0, len(REGIONS), n_users))
    users = pd.DataFrame({"user_id": user_ids, "region": np.array(REGIONS)[region]})
    users.to_csv(out / "users.csv", index=False)

    latent = items.drop(columns=["title", "description", "brand", "price"]).assign(hue=hue)
    latent.insert(0, "item_id", item_ids)
    latent["corrupt"] = np.select([idx == bad_png, idx == bad_wav], ["image", "audio"], "")
    latent.to_csv(out / "latent" / "items.csv", index=False, float_format="%.6g")
    names = ([f"cat_{k}" for k in range(N_CAT)] + [f"colour_{k}" for k in range(N_COLOUR)]
             + [f"style_{k}" for k in range(N_STYLE)] + [f"tempo_{k}" for k in range(N_TEMPO)])
    lu = pd.DataFrame(taste, columns=names)
    lu.insert(0, "user_id", user_ids)
    lu["pop_beta"], lu["n_interactions"] = beta, counts
    lu.to_csv(out / "latent" / "users.csv", index=False, float_format="%.6g")

    Manifest(name="demo", items="items.csv", interactions="interactions.csv", users="users.csv",
             timestamp="timestamp",
             modalities={"text": ModalitySpec(kind="text", columns=["title", "description"]),
                         "image": ModalitySpec(kind="image", column="image_path"),
                         "audio": ModalitySpec(kind="audio", column="audio_path")},
             categorical=["brand"], numeric=["price"]).save(out)
    return out
