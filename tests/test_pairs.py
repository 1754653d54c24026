"""Pair files (LFW and CSV), fold selection, and balanced pair generation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import data_root
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from facecmp.errors import FacecmpError
from facecmp.pairs import (
    Pair,
    make_balanced_pairs,
    missing_images,
    read_pairs,
    select_folds,
    write_pairs_csv,
)

LFW_2_FOLDS = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t2\tDave\t1
Eve\t1\t2
Frank\t2\t3
Eve\t1\tFrank\t1
Gina\t1\tHank\t4
"""



def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def make_tree(root: Path, counts: dict[str, int]) -> Path:
    """Identity folders of tiny PNGs: {name: number of images}."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (4, 4), color=i * 20).save(root / name / f"{name}_{i + 1:04d}.png")
    return root


# -- LFW format ----------------------------------------------------------------------

def test_read_lfw_two_folds(tmp_path):
    (tmp_path / "lfw").mkdir()
    pairs = read_pairs(write(tmp_path / "pairs.txt", LFW_2_FOLDS))
    assert len(pairs) == 8
    assert [p.fold for p in pairs] == [1] * 4 + [2] * 4
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.line for p in pairs] == list(range(2, 10))
    root = tmp_path / "lfw"
    assert pairs[0] == Pair(root / "Alice/Alice_0001.jpg", root / "Alice/Alice_0002.jpg",
                            True, 1, 2)
    assert pairs[3].path_a == root / "Carol/Carol_0002.jpg"
    assert pairs[3].path_b == root / "Dave/Dave_0001.jpg"


def test_read_lfw_images_root_defaults_and_override(tmp_path):
    path = write(tmp_path / "pairs.txt", LFW_2_FOLDS)
    assert read_pairs(path)[0].path_a == tmp_path / "Alice/Alice_0001.jpg"  # no lfw/ dir
    other = tmp_path / "elsewhere"
    assert read_pairs(path, images_root=other)[0].path_a == other / "Alice/Alice_0001.jpg"


def test_read_lfw_single_fold_header(tmp_path):
    path = write(tmp_path / "dev.txt", "1\nAlice 1 2\nAlice 1 Bob 1\n")
    pairs = read_pairs(path)
    assert [(p.same, p.fold) for p in pairs] == [(True, 1), (False, 1)]


def test_read_lfw_wrong_field_count_names_line(tmp_path):
    text = LFW_2_FOLDS.replace("Alice\t1\tBob\t2", "Alice\t1\tBob")
    with pytest.raises(FacecmpError) as exc:
        read_pairs(write(tmp_path / "pairs.txt", text))
    msg = str(exc.value)
    assert "pairs.txt:4:" in msg and "mismatched" in msg and "\n" not in msg


def test_read_lfw_non_integer_image_number(tmp_path):
    text = LFW_2_FOLDS.replace("Bob\t1\t3", "Bob\tone\t3")
    with pytest.raises(FacecmpError, match=r"pairs\.txt:3:.*'one'"):
        read_pairs(write(tmp_path / "pairs.txt", text))


def test_read_lfw_count_mismatch_short_matched_block(tmp_path):
    # Fold 1 has only one matched line, so a mismatched line arrives too early.
    text = LFW_2_FOLDS.replace("Bob\t1\t3\n", "")
    with pytest.raises(FacecmpError, match=r"pairs\.txt:3: expected matched pair 2 of 2"):
        read_pairs(write(tmp_path / "pairs.txt", text))


def test_read_lfw_count_mismatch_missing_fold(tmp_path):
    text = "\n".join(LFW_2_FOLDS.splitlines()[:5]) + "\n"
    with pytest.raises(FacecmpError, match=r"pairs\.txt:5: file ends in fold 2"):
        read_pairs(write(tmp_path / "pairs.txt", text))


def test_read_lfw_extra_line(tmp_path):
    with pytest.raises(FacecmpError, match=r"pairs\.txt:10: extra line"):
        read_pairs(write(tmp_path / "pairs.txt", LFW_2_FOLDS + "Ivy\t1\t2\n"))


def test_missing_or_empty_pairs_file(tmp_path):
    with pytest.raises(FacecmpError, match="not found"):
        read_pairs(tmp_path / "nope.txt")
    with pytest.raises(FacecmpError, match="empty"):
        read_pairs(write(tmp_path / "empty.txt", "\n\n"))
    with pytest.raises(FacecmpError, match="directory"):
        read_pairs(tmp_path)


# -- CSV format ----------------------------------------------------------------------

def test_read_csv_with_header_comments_and_labels(tmp_path):
    text = ("path_a,path_b,same\n"
            "# a comment\n"
            "a/1.jpg,a/2.jpg,1\n"
            "\n"
            "a/1.jpg,b/1.jpg,different\n"
            f"{tmp_path / 'abs.jpg'},b/2.jpg,Yes\n"
            "b/1.jpg,b/2.jpg,false\n")
    pairs = read_pairs(write(tmp_path / "pairs.csv", text))
    assert [p.same for p in pairs] == [True, False, True, False]
    assert [p.line for p in pairs] == [3, 5, 6, 7]
    assert {p.fold for p in pairs} == {1}
    assert pairs[0].path_a == tmp_path / "a/1.jpg"
    assert pairs[2].path_a == tmp_path / "abs.jpg"


def test_read_csv_without_header_and_images_root(tmp_path):
    path = write(tmp_path / "pairs.csv", "x.png,y.png,same\nx.png,z.png,0\n")
    pairs = read_pairs(path, images_root=tmp_path / "imgs")
    assert [p.same for p in pairs] == [True, False]
    assert pairs[0].path_a == tmp_path / "imgs/x.png"
    assert pairs[0].line == 1


def test_read_csv_bad_rows_name_line(tmp_path):
    with pytest.raises(FacecmpError, match=r"pairs\.csv:2: 'same' must be"):
        read_pairs(write(tmp_path / "pairs.csv", "a.jpg,b.jpg,1\na.jpg,c.jpg,maybe\n"))
    with pytest.raises(FacecmpError, match=r"pairs\.csv:1: expected 3"):
        read_pairs(write(tmp_path / "pairs.csv", "a.jpg,b.jpg\n"))


def test_write_pairs_csv_round_trip(tmp_path):
    pairs = [Pair(tmp_path / "a, b.jpg", tmp_path / "c.jpg", True, 1, 2),
             Pair(tmp_path / "c.jpg", tmp_path / "d.jpg", False, 1, 3)]
    out = tmp_path / "out.csv"
    write_pairs_csv(pairs, out)
    assert out.read_text().splitlines()[0] == "path_a,path_b,same"
    assert read_pairs(out) == pairs


# -- folds and missing images --------------------------------------------------------

def test_select_folds(tmp_path):
    pairs = read_pairs(write(tmp_path / "pairs.txt", LFW_2_FOLDS))
    assert select_folds(pairs, "1") == pairs[:4]
    assert select_folds(pairs, "2") == pairs[4:]
    assert select_folds(pairs, "1-2") == pairs
    assert select_folds(pairs, "2, 1") == pairs
    with pytest.raises(FacecmpError, match="fold.*3.*not in"):
        select_folds(pairs, "1,3")
    for bad in ("x", "2-1", "0", "1-", ""):
        with pytest.raises(FacecmpError, match="bad fold selection"):
            select_folds(pairs, bad)


def test_missing_images_reports_each_missing_file(tmp_path):
    make_tree(tmp_path, {"A": 2})
    a1, a2 = tmp_path / "A/A_0001.png", tmp_path / "A/A_0002.png"
    gone = tmp_path / "A/A_0009.png"
    pairs = [Pair(a1, a2, True, 1, 1), Pair(a1, gone, True, 1, 2)]
    assert missing_images(pairs) == [(pairs[1], gone)]
    assert missing_images(pairs[:1]) == []


# -- balanced pairs ------------------------------------------------------------------

def test_make_balanced_pairs_is_balanced_and_unique(tmp_path):
    root = make_tree(tmp_path / "faces", {"A": 3, "B": 3, "C": 3, "D": 3})
    pairs = make_balanced_pairs(root, 6, 6, seed=0)
    assert [p.same for p in pairs] == [True] * 6 + [False] * 6
    for p in pairs:
        assert p.path_a != p.path_b
        assert (p.path_a.parent == p.path_b.parent) == p.same
        assert p.path_a.is_file() and p.path_b.is_file()
    keys = {frozenset((p.path_a, p.path_b)) for p in pairs}
    assert len(keys) == 12


def test_make_balanced_pairs_deterministic_per_seed(tmp_path):
    root = make_tree(tmp_path / "faces", {"A": 4, "B": 4, "C": 4, "D": 4, "E": 4})
    assert make_balanced_pairs(root, 10, 10, seed=7) == make_balanced_pairs(root, 10, 10, seed=7)
    assert make_balanced_pairs(root, 10, 10, seed=7) != make_balanced_pairs(root, 10, 10, seed=8)


def test_make_balanced_pairs_can_use_every_pair(tmp_path):
    root = make_tree(tmp_path / "faces", {"A": 3, "B": 2})
    pairs = make_balanced_pairs(root, 4, 6)  # C(3,2)+C(2,2) same, 3*2 different
    assert len({frozenset((p.path_a, p.path_b)) for p in pairs}) == 10


def test_make_balanced_pairs_fails_clearly(tmp_path):
    one = make_tree(tmp_path / "one", {"A": 5})
    with pytest.raises(FacecmpError, match="at least 2 identity folders"):
        make_balanced_pairs(one, 2, 2)
    two = make_tree(tmp_path / "two", {"A": 3, "B": 1})
    with pytest.raises(FacecmpError, match="only 3 same-identity pairs possible"):
        make_balanced_pairs(two, 4, 0)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "x.png")
    with pytest.raises(FacecmpError, match="no identity folders with images"):
        make_balanced_pairs(flat, 1, 1)
    with pytest.raises(FacecmpError, match="not a folder"):
        make_balanced_pairs(tmp_path / "absent", 1, 1)


def test_make_pairs_tool(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_pairs", REPO / "tools/make_pairs.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = make_tree(tmp_path / "faces", {"A": 3, "B": 3})
    out = tmp_path / "sub" / "pairs.csv"
    out.parent.mkdir()
    assert tool.main([str(root), "--same", "3", "--different", "4", "--out", str(out)]) == 0
    pairs = read_pairs(out)
    assert len(pairs) == 7 and missing_images(pairs) == []
    assert tool.main([str(make_tree(tmp_path / "one", {"A": 3})), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err



def test_holdout_tool_keeps_its_identities_when_singletons_join(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("holdout", REPO / "tools/holdout_identities.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    counts = {f"P{i}": 4 for i in range(6)} | {f"S{i}": 1 for i in range(5)} | {"T0": 4, "T1": 1}
    root = make_tree(tmp_path / "faces", counts)
    pairs = write(tmp_path / "test.txt", "1 1\nT0 1 2\nT0 1 T1 1\n")  # T0, T1: test people
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    assert tool.main([str(root), "--pairs", str(pairs), "-n", "3", "--out", str(plain)]) == 0
    assert tool.main([str(root), "--pairs", str(pairs), "-n", "3", "--singletons", "2",
                      "--out", str(mixed)]) == 0
    held = (plain / "holdout.txt").read_text().split()
    assert (mixed / "holdout.txt").read_text().split() == held and len(held) == 3
    once = (mixed / "singletons.txt").read_text().split()
    assert len(once) == 2 and all(n.startswith("S") for n in once)
    assert sorted(p.name for p in (mixed / "identities").iterdir()) == sorted(held + once)
    # singletons cannot make same-identity pairs, so they only enter different ones
    made = make_balanced_pairs(mixed / "identities", 10, 10, seed=0)
    assert all(p.path_a.parent.name.startswith("P") for p in made if p.same)
    assert tool.main([str(root), "--pairs", str(pairs), "-n", "3", "--singletons", "9",
                      "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "exactly one image" in err

# -- real data -----------------------------------------------------------------------

def lfw_file(name: str) -> Path:
    path = data_root() / name
    if not path.is_file() or not (data_root() / "lfw").is_dir():
        pytest.skip(f"LFW data not found at {data_root()} (set FACECMP_DATA)")
    return path


def test_real_lfw_view2_pairs():
    pairs = read_pairs(lfw_file("lfw-pairs.txt"))
    assert len(pairs) == 6000
    for fold in range(1, 11):
        in_fold = [p for p in pairs if p.fold == fold]
        assert len(in_fold) == 600
        assert sum(p.same for p in in_fold) == 300
    assert len(select_folds(pairs, "1-5")) == 3000
    assert missing_images(pairs) == []


def test_real_lfw_view1_dev_test_pairs():
    pairs = read_pairs(lfw_file("lfw-pairsDevTest.txt"))
    assert len(pairs) == 1000
    assert sum(p.same for p in pairs) == 500
    assert {p.fold for p in pairs} == {1}


# -- CSV fold column -----------------------------------------------------------------

def test_read_csv_fold_column(tmp_path):
    text = ("path_a,path_b,same,fold\n"
            "a/1.jpg,a/2.jpg,1,1\n"
            "a/1.jpg,b/1.jpg,0,1\n"
            "# fold 2\n"
            "c/1.jpg,c/2.jpg,same,2\n"
            "c/1.jpg,d/1.jpg,different,2\n")
    pairs = read_pairs(write(tmp_path / "pairs.csv", text))
    assert [p.fold for p in pairs] == [1, 1, 2, 2]
    assert [p.same for p in pairs] == [True, False, True, False]
    assert [p.line for p in pairs] == [2, 3, 5, 6]
    assert select_folds(pairs, "2") == pairs[2:]
    with pytest.raises(FacecmpError, match="fold.*3.*not in"):
        select_folds(pairs, "3")


def test_read_csv_fold_column_without_header(tmp_path):
    pairs = read_pairs(write(tmp_path / "pairs.csv", "x.png,y.png,1,3\nx.png,z.png,0,4\n"))
    assert [(p.same, p.fold) for p in pairs] == [(True, 3), (False, 4)]


def test_read_csv_bad_fold_names_line(tmp_path):
    for bad in ("0", "-1", "two", "1.5", ""):
        text = f"path_a,path_b,same,fold\na.jpg,b.jpg,1,1\na.jpg,c.jpg,0,{bad}\n"
        with pytest.raises(FacecmpError, match=r"pairs\.csv:3: 'fold' must be a positive integer"):
            read_pairs(write(tmp_path / "pairs.csv", text))


def test_read_csv_mixing_rows_with_and_without_folds_names_line(tmp_path):
    with pytest.raises(FacecmpError, match=r"pairs\.csv:3: 3 comma-separated fields.*have 4"):
        read_pairs(write(tmp_path / "pairs.csv", "a.jpg,b.jpg,1,1\n\na.jpg,c.jpg,0\n"))
    with pytest.raises(FacecmpError, match=r"pairs\.csv:2: 4 comma-separated fields.*have 3"):
        read_pairs(write(tmp_path / "pairs.csv", "path_a,path_b,same\na.jpg,c.jpg,0,1\n"))
    with pytest.raises(FacecmpError, match=r"pairs\.csv:1: expected 3.*or 4"):
        read_pairs(write(tmp_path / "pairs.csv", "a.jpg,b.jpg,1,1,1\n"))


def test_write_pairs_csv_with_folds_round_trip(tmp_path):
    pairs = [Pair(tmp_path / "a.jpg", tmp_path / "b.jpg", True, 1, 2),
             Pair(tmp_path / "a.jpg", tmp_path / "c.jpg", False, 1, 3),
             Pair(tmp_path / "c.jpg", tmp_path / "d.jpg", True, 2, 4)]
    out = tmp_path / "out.csv"
    write_pairs_csv(pairs, out, folds=True)
    assert out.read_text().splitlines()[0] == "path_a,path_b,same,fold"
    assert read_pairs(out) == pairs
    write_pairs_csv(pairs, out)  # without folds: every pair reads back in fold 1
    assert [p.fold for p in read_pairs(out)] == [1, 1, 1]


def test_sweep_uses_csv_folds(tmp_path):
    from facecmp.sweep import fold_ids

    pairs = read_pairs(write(tmp_path / "pairs.csv",
                             "a.jpg,b.jpg,1,1\na.jpg,c.jpg,0,1\nc.jpg,d.jpg,1,2\nc.jpg,e.jpg,0,2\n"))
    assert fold_ids(pairs, 10).tolist() == [1, 1, 2, 2]
