#!/usr/bin/env python3
"""Makes test images with Pillow, the independent codec the image tests compare against.

  pillow_images.py DIR

writes into DIR, for each image NAME.EXT, Pillow's own decode of it as raw pixels:
  NAME.EXT.RGB.raw   Image.open(f).convert("RGB")
  NAME.EXT.L.raw     Image.open(f).convert("L")
  NAME.EXT.RGBA.raw  Image.open(f).convert("RGBA")
  NAME.EXT.RGB.224x224.raw   convert("RGB").resize((224, 224), Image.BILINEAR)
  NAME.EXT.RGB.40x30.raw     convert("RGB").resize((30, 40), Image.BILINEAR)   (height x width)
and a line "NAME.EXT HEIGHT WIDTH" per image in DIR/images.txt.
"""
import math
import os
import random
import sys

from PIL import Image


def photo(width, height, seed):
    """Smooth shapes and a little noise: compresses like a photograph, not like noise."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (width, height))
    px = img.load()
    fx, fy = rnd.uniform(0.01, 0.05), rnd.uniform(0.01, 0.05)
    for y in range(height):
        for x in range(width):
            r = int(127 + 120 * math.sin(x * fx + y * 0.002))
            g = int(127 + 120 * math.cos(y * fy))
            b = (x * 255) // max(1, width - 1)
            n = rnd.randint(-6, 6)
            px[x, y] = (max(0, min(255, r + n)), max(0, min(255, g - n)), max(0, min(255, b + n)))
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    made = []

    def save(img, name, **kw):
        img.save(os.path.join(out, name), **kw)
        made.append(name)

    base = photo(131, 97, 1)
    save(base, "rgb.png")
    rgba = base.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    save(rgba, "rgba.png")
    save(base.convert("L"), "gray.png")
    save(base.convert("P", palette=Image.ADAPTIVE, colors=50), "palette.png")
    save(base.convert("LA"), "gray_alpha.png")
    save(photo(500, 375, 2), "photo.jpg", quality=90)
    save(photo(160, 120, 3).convert("L"), "gray.jpg", quality=85)
    save(photo(333, 250, 4), "progressive.jpg", quality=80, progressive=True)

    with open(os.path.join(out, "images.txt"), "w") as listing:
        for name in made:
            path = os.path.join(out, name)
            img = Image.open(path)
            img.load()
            listing.write("%s %d %d\n" % (name, img.height, img.width))
            for mode in ("RGB", "L", "RGBA"):
                with open(path + "." + mode + ".raw", "wb") as f:
                    f.write(img.convert(mode).tobytes())
            for h, w in ((224, 224), (40, 30)):
                with open(path + ".RGB.%dx%d.raw" % (h, w), "wb") as f:
                    f.write(img.convert("RGB").resize((w, h), Image.BILINEAR).tobytes())


if __name__ == "__main__":
    main()
