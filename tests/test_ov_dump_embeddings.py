"""tools/dump_clip_text_embeddings.py writes the matrix with the metadata heads check."""
import pytest
import torch
from conftest import load_tool

from zip_d2.text import TextEmbeddings


def dump(argv):
    return load_tool("dump_clip_text_embeddings").main(argv)


def test_dump_writes_normalised_matrix_with_model_prompts_and_names(tmp_path):
    out = tmp_path / "emb.pth"
    rc = dump(["--vocabulary", "circle,square,star", "--clip-model", "zip-tiny-vit",
               "--random-weights", "--templates", "single", "--out", str(out)])
    assert rc == 0
    emb = TextEmbeddings.load(str(out))
    assert emb.class_names == ["circle", "square", "star"]
    assert emb.clip_model == "zip-tiny-vit" and emb.random_weights
    assert emb.templates == "single"
    assert emb.embeddings.shape == (3, 32)
    torch.testing.assert_close(emb.embeddings.norm(dim=1), torch.ones(3))
    emb.check_compatible("zip-tiny-vit")
    with pytest.raises(ValueError):
        emb.check_compatible("ViT-B-16")


def test_dump_reports_a_bad_vocabulary_as_an_error(tmp_path, capsys):
    rc = dump(["--vocabulary", "a,a", "--clip-model", "zip-tiny-vit", "--random-weights",
               "--out", str(tmp_path / "x.pth")])
    assert rc == 2
    assert "repeats" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()
