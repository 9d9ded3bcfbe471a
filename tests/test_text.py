import pytest
import torch
import torch.nn.functional as F

from zip_d2.text import (
    TEMPLATES,
    TextEmbeddings,
    build_text_embeddings,
    encode_text_ensemble,
    load_vocabulary,
)


def test_coco_vocabulary_has_80_thing_classes_with_coco_ids():
    cats = load_vocabulary("coco")
    assert len(cats) == 80
    assert cats[0] == {"id": 1, "name": "person"}
    assert cats[-1] == {"id": 90, "name": "toothbrush"}


def test_lvis_vocabulary_has_1203_classes():
    cats = load_vocabulary("lvis")
    assert len(cats) == 1203 and cats[0]["id"] == 1


def test_comma_list_and_file_vocabularies_number_from_one(tmp_path):
    assert load_vocabulary("cat, dog ,bird") == [
        {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    f = tmp_path / "v.txt"
    f.write_text("red car\n\nblue bus\n")
    assert [c["name"] for c in load_vocabulary(str(f))] == ["red car", "blue bus"]


def test_a_single_class_is_written_with_a_trailing_comma():
    assert load_vocabulary("zebra,") == [{"id": 1, "name": "zebra"}]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("cat,dog,cat", "repeats"),
        (" , ", "no class names"),
        ("/nonexistent/vocab.txt", "does not exist"),
        # Neither a builtin name, nor an existing file, nor a comma list: never one class.
        ("my_classes.names", "file my_classes.names does not exist; a vocabulary is 'coco'"),
        ("custom", "'custom' is not a known name.*'a,' for a single class"),
        ("COCO_80", "'COCO_80' is not a known name"),
    ],
)
def test_bad_vocabularies_are_one_line_value_errors(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        load_vocabulary(spec)
    assert "\n" not in str(e.value)


def test_ensemble_is_80_imagenet_plus_5_scene_templates():
    assert len(TEMPLATES["ensemble"]) == 85
    filled = [t("cat") if callable(t) else t.format("cat") for t in TEMPLATES["ensemble"]]
    assert all("cat" in s for s in filled)
    assert "there is a cat in the scene." in filled


class _BagOfLettersText(torch.nn.Module):
    """A text 'encoder' whose embedding of a prompt is known in closed form."""

    def encode_text(self, tokens):
        return tokens.float()


def _tok(prompts):
    out = torch.zeros(len(prompts), 26)
    for i, p in enumerate(prompts):
        for ch in p:
            if ch.isalpha():
                out[i, ord(ch.lower()) - 97] += 1
    return out


def test_ensemble_embedding_is_renormalised_mean_of_normalised_prompts():
    templates = ["a {}", "the big {}"]
    got = encode_text_ensemble(_BagOfLettersText(), _tok, ["cat", "ox"], templates)
    for row, name in zip(got, ["cat", "ox"]):
        each = F.normalize(_tok([t.format(name) for t in templates]), dim=-1)
        assert torch.allclose(row, F.normalize(each.mean(0), dim=0), atol=1e-6)


def test_text_embeddings_round_trip_and_reject_other_clip(tmp_path):
    torch.manual_seed(0)
    te = build_text_embeddings(["cat", "dog"], "zip-tiny-vit", "openai", templates="single",
                               random_weights=True)
    assert te.embeddings.shape == (2, 32) and te.embeddings.dtype == torch.float32
    assert torch.allclose(te.embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
    path = tmp_path / "emb.pt"
    te.save(str(path))
    back = TextEmbeddings.load(str(path))
    assert back.class_names == ["cat", "dog"] and back.clip_model == "zip-tiny-vit"
    assert back.templates == "single" and back.random_weights
    assert torch.equal(back.embeddings, te.embeddings)
    back.check_compatible("zip-tiny-vit")
    with pytest.raises(ValueError, match="ViT-B-16"):
        back.check_compatible("ViT-B-16")
