"""The one layer-grouping engine (`tltf.backbones.grouping`) that every source's groups use."""

from __future__ import annotations

from tltf.backbones.grouping import fill, grouped


def test_unrecognised_layers_join_their_neighbours_and_the_edges_their_names():
    assert fill([None, "block1", None, "block2", None], before="stem", after="top") == [
        "stem",
        "block1",
        "block1",
        "block2",
        "top",
    ]
    assert fill([None, "a", None, "b", None]) == ["a", "a", "a", "b", "b"]
    assert fill([None, "a", None, "b", None], inherit="next") == ["a", "a", "b", "b", "b"]
    assert fill([None, None], before="embeddings") == ["embeddings", "embeddings"]


def test_groups_stay_contiguous_in_layer_order():
    # a layer of the stem scheduled after the first cell opened (NASNet) joins the stem
    assert fill(["stem", "cell0", "stem", "cell1"]) == ["stem", "stem", "stem", "cell1"]
    assert grouped(["c", "b", "d"], ["stem", "stem", "top"]) == {"stem": ["c", "b"], "top": ["d"]}
