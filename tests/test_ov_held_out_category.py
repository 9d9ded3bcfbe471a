"""A head trained on some categories scores a held-out one through its text embedding alone.

No real CLIP weights exist on the test machines, and a random-weight CLIP's text embeddings
carry no meaning, so this test CONSTRUCTS the text embeddings: each synthetic category is a
(shape, colour) pair, its "text" embedding the normalised sum of a shape vector and a colour
vector (the compositional structure real CLIP embeddings of "red square" etc. roughly have).
RoI features are built from the same latent attributes through a fixed random map plus noise.
The head is trained on three categories; the fourth (blue square) is never seen. After the
vocabulary swap to all four, the head must pick "blue square" for blue-square RoIs, which it
can only do by projecting into text space, where the held-out embedding lies.
"""
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from zip_d2.modeling import OpenVocabOutputLayers
from zip_d2.text import TextEmbeddings

SHAPE_NAMES = ["circle", "square"]
COLOUR_NAMES = ["red", "blue"]
TRAIN = [("red", "circle"), ("blue", "circle"), ("red", "square")]
HELD_OUT = ("blue", "square")
FEATURE_DIM, TEXT_DIM = 64, 32


def _attribute_vectors(gen):
    # Orthonormal attribute directions, so composed embeddings are distinct but related.
    q, _ = torch.linalg.qr(
        torch.randn(TEXT_DIM, len(SHAPE_NAMES) + len(COLOUR_NAMES), generator=gen)
    )
    vecs = q.t()
    return {n: vecs[i] for i, n in enumerate(SHAPE_NAMES + COLOUR_NAMES)}


def _text_embeddings(classes, attrs):
    emb = torch.stack([attrs[c] + attrs[s] for c, s in classes])
    names = [f"{c} {s}" for c, s in classes]
    return TextEmbeddings(torch.nn.functional.normalize(emb, dim=1), names, "constructed", "none")


def _features(cls, n, mixing, gen):
    colour, shape = cls
    latent = torch.zeros(n, len(SHAPE_NAMES) + len(COLOUR_NAMES))
    latent[:, SHAPE_NAMES.index(shape)] = 1.0
    latent[:, len(SHAPE_NAMES) + COLOUR_NAMES.index(colour)] = 1.0
    return torch.relu(latent @ mixing + 0.1 * torch.randn(n, FEATURE_DIM, generator=gen))


def _proposals(gt_classes):
    inst = Instances((64, 64))
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]]).repeat(len(gt_classes), 1)
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_boxes = Boxes(boxes.clone())
    inst.gt_classes = gt_classes
    return [inst]


def test_head_trained_without_a_category_scores_it_through_its_text_embedding():
    gen = torch.Generator().manual_seed(0)
    attrs = _attribute_vectors(gen)
    # Non-negative mixing, like post-ReLU box-head features of the attributes.
    mixing = torch.rand(len(SHAPE_NAMES) + len(COLOUR_NAMES), FEATURE_DIM, generator=gen)
    torch.manual_seed(0)
    head = OpenVocabOutputLayers(
        ShapeSpec(channels=FEATURE_DIM),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        train_embeddings=_text_embeddings(TRAIN, attrs),
        clip_model="constructed",
        temperature=50.0,
    )
    head.set_test_vocabulary(_text_embeddings(TRAIN + [HELD_OUT], attrs))
    held_out_index = len(TRAIN)
    held_out_x = _features(HELD_OUT, 200, mixing, gen)

    def held_out_accuracy():
        head.eval()
        with torch.no_grad():
            logits, _ = head(held_out_x)
        head.train()
        assert logits.shape[1] == len(TRAIN) + 2  # 4 classes + background
        return (logits[:, :-1].argmax(dim=1) == held_out_index).float().mean().item()

    # Control: the untrained projection does not already land there.
    before = held_out_accuracy()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    per_class = 32
    with EventStorage():
        for _ in range(60):
            x = torch.cat([_features(c, per_class, mixing, gen) for c in TRAIN])
            y = torch.arange(len(TRAIN)).repeat_interleave(per_class)
            # Training mode scores the 3 training classes only: the held-out one is never seen.
            logits, deltas = head(x)
            assert logits.shape[1] == len(TRAIN) + 1
            loss = head.losses((logits, deltas), _proposals(y))["loss_cls"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = held_out_accuracy()
    # Chance among 4 classes is 0.25; the nearest training classes share one attribute each.
    assert before < 0.9, f"untrained head already scores the held-out class ({before:.0%})"
    assert after > 0.9, f"held-out category picked for only {after:.0%} of its RoIs"
