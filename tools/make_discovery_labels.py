#!/usr/bin/env python
"""Write DISCOVERY-MADE pseudo-labels: zip_d2's k-means and discovery on constructed features.

For experiments without CLIP/SAM weights (see zip_d2/pseudo/discovery_labels.py): each scene of
a ground-truth COCO JSON gets constructed boundary-aware features on a coarse grid, k-means,
class regions from its blurred ground-truth masks (Zip's 0.7 x mean threshold), and the
project's discovery step with the paper's rule (default) or the thinness rule; grid masks are
upsampled to the image. Every parameter, the rule and the seed go into the output's info block,
which says "discovery-made, constructed features".

    python tools/make_discovery_labels.py --gt work/synthetic/train.json \
        --out work/synthetic/discovery_new_train.json --min-inscribed-radius 2 --seed 0
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys
from dataclasses import fields

from zip_d2.pseudo.discovery_label_params import DISCOVERY_LABEL, DiscoveryLabelParams


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True, help="ground-truth COCO JSON with masks")
    p.add_argument("--out", required=True, help="pseudo-label JSON to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the constructed features")
    for f in fields(DiscoveryLabelParams):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"default {f.default}")
    args = p.parse_args(argv)
    try:
        params = DiscoveryLabelParams(**{f.name: getattr(args, f.name)
                                         for f in fields(DiscoveryLabelParams)})
    except ValueError as e:
        p.error(str(e))
    # torch loads only now: --help and argument errors answer without it.
    from zip_d2.data.validate import DatasetError
    from zip_d2.pseudo.discovery_labels import write_discovery_pseudo_labels

    try:
        data = write_discovery_pseudo_labels(args.gt, args.out, params, seed=args.seed)
    except (DatasetError, ValueError, OSError) as e:
        print(f"make_discovery_labels: error: {e}", file=sys.stderr)
        return 2
    print(f"{DISCOVERY_LABEL} ({params.rule}): {len(data['annotations'])} annotations on "
          f"{len(data['images'])} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
