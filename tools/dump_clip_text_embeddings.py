#!/usr/bin/env python
"""Write the CLIP text embeddings of a vocabulary, with the metadata a detector checks.

The file (torch format, ``zip_d2.text.TextEmbeddings``) holds the (C, D) L2-normalised matrix
(prompt-ensemble mean, re-normalised), the class names in row order, the CLIP model, its weights
and the prompts. Point ``MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS`` (training) or
``TEST_EMBEDDINGS`` (vocabulary swap) at it; a head configured for another CLIP model refuses it.

    python tools/dump_clip_text_embeddings.py --vocabulary coco --out work/coco_vitb16.pth
    python tools/dump_clip_text_embeddings.py --vocabulary "cat,dog" --templates single \
        --clip-model ViT-B-16 --pretrained /path/to/ViT-B-16.pt --out work/pets.pth
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys

# zip_d2.text's prompt sets (checked against it after parsing; --help imports no torch).
TEMPLATE_SETS = ("ensemble", "single")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vocabulary", required=True,
        help='"coco", "lvis", an existing text file with one class name a line, or "a,b,c" '
             '("a," for one class)',
    )
    parser.add_argument("--out", required=True, help="output file (.pth)")
    parser.add_argument("--clip-model", default="ViT-B-16", help="open_clip architecture")
    parser.add_argument(
        "--pretrained", default="openai", help="open_clip pretrained tag or a local checkpoint file"
    )
    parser.add_argument(
        "--templates", default="ensemble", choices=TEMPLATE_SETS,
        help="prompt set: CLIP's 80 ImageNet templates + 5 scene templates, or one template",
    )
    parser.add_argument("--device", default="cpu", help='"cpu" or "cuda"')
    parser.add_argument(
        "--random-weights", action="store_true",
        help="tests only: a randomly initialised CLIP (announced loudly, recorded in the file)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zip_d2.data.paths import refuse_overwriting_inputs
    from zip_d2.models import MissingWeightsError
    from zip_d2.text import TEMPLATES, build_text_embeddings, load_vocabulary

    assert set(TEMPLATE_SETS) == set(TEMPLATES), "TEMPLATE_SETS is out of date"
    try:
        refuse_overwriting_inputs({"--out": args.out}, {"--vocabulary": args.vocabulary,
                                                        "--pretrained": args.pretrained})
        names = [c["name"] for c in load_vocabulary(args.vocabulary)]
        emb = build_text_embeddings(
            names, args.clip_model, args.pretrained, templates=args.templates,
            device=args.device, random_weights=args.random_weights, key="--pretrained",
        )
    except (ValueError, MissingWeightsError) as e:
        print(f"dump_clip_text_embeddings: error: {e}", file=sys.stderr)
        return 2
    emb.save(args.out)
    print(
        f"dump_clip_text_embeddings: wrote {args.out}: {len(names)} classes x "
        f"{emb.embeddings.shape[1]} dims, CLIP {emb.clip_model} ({emb.clip_pretrained}), "
        f"templates {args.templates}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
