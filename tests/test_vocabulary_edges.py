"""Vocabulary specs at the edges: what a user types by accident must not become class names."""
import pytest

from zip_d2.text import load_vocabulary


def _names(spec):
    return [c["name"] for c in load_vocabulary(spec)]


@pytest.mark.parametrize("spec", ["data/classes,v2.txt", "classes,v2.txt", "a,b/c"])
def test_a_comma_list_that_names_a_missing_file_is_a_missing_file(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"file {spec} does not exist") as e:
        load_vocabulary(spec)
    assert "\n" not in str(e.value)


def test_a_file_with_a_comma_in_its_name_is_read_as_a_file(tmp_path):
    path = tmp_path / "classes,v2.txt"
    path.write_text("dog\ncat\n")
    assert _names(str(path)) == ["dog", "cat"]


def test_a_dot_inside_a_class_name_keeps_a_comma_list_a_list():
    assert _names("st. bernard,dog") == ["st. bernard", "dog"]


def test_a_byte_order_mark_is_not_part_of_the_first_class_name(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffdog\r\ncat\r\n".encode("utf-8"))
    assert _names(str(path)) == ["dog", "cat"]


@pytest.mark.parametrize("spec", ["[dog, cat]", "['dog', 'cat']", '["dog","cat"]', "[dog,cat],"])
def test_a_bracketed_list_is_the_list_of_its_items(spec):
    assert _names(spec) == ["dog", "cat"]


@pytest.mark.parametrize("spec", ["[dog, cat", "dog, cat]", "'dog', 'cat'"])
def test_a_half_bracketed_or_quoted_plain_list_is_refused_in_one_line(spec):
    with pytest.raises(ValueError, match="bracket or quote") as e:
        load_vocabulary(spec)
    assert "\n" not in str(e.value)


def test_a_folder_is_reported_as_a_folder(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} is a folder"):
        load_vocabulary(str(tmp_path))


def test_a_latin1_file_is_named_in_its_error(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("caf\xe9\nna\xefve\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"{path} is not UTF-8 text") as e:
        load_vocabulary(str(path))
    assert "\n" not in str(e.value) and "save it as UTF-8" in str(e.value)
