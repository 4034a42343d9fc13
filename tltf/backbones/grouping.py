"""Layer groups from layer names: the one engine behind every source's groups.

In the style of timm's ``group_matcher``: a source says which layers it recognises
(``keras_apps``: a family's ``regex -> group`` rules; KerasHub: numbered blocks and
stages; a user's network: each layer with weights) and `fill` gives every other layer
a group, the same way for all of them. Freezing and per-group rates then work on the
groups alone.
"""

from __future__ import annotations

INHERIT = ("previous", "next")


def fill(
    assigned: list[str | None],
    *,
    inherit: str = "previous",
    before: str | None = None,
    after: str | None = None,
) -> list[str]:
    """Every layer's group, in model order, from the ones a source recognised (None: not).

    An unrecognised layer joins the group before it (``inherit="previous"``) or after it
    (``"next"``); those before the first recognised layer join `before` when given, those
    after the last one `after`, else the nearest group. Groups stay contiguous: a layer
    scheduled before the end of an earlier group joins that group (NASNet computes cell
    0's input adjustment while the stem still runs).

    Example:
        >>> fill([None, "block1", None, "block2", None], before="stem", after="top")
        ['stem', 'block1', 'block1', 'block2', 'top']
        >>> fill([None, "a", None, "b"], inherit="next")
        ['a', 'a', 'b', 'b']
    """
    groups = list(assigned)
    known = [i for i, g in enumerate(groups) if g is not None]
    if not known:
        return [before or after or "module"] * len(groups)
    if before is not None:
        groups[: known[0]] = [before] * known[0]
    if after is not None:
        groups[known[-1] + 1 :] = [after] * (len(groups) - known[-1] - 1)
    forwards = list(range(len(groups)))
    first, second = (forwards[::-1], forwards) if inherit == "next" else (forwards, forwards[::-1])
    for order in (first, second):  # the second pass fills the edge the first could not
        carry = None
        for i in order:
            if groups[i] is None:
                groups[i] = carry
            else:
                carry = groups[i]
    rank = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    for i in range(len(groups) - 2, -1, -1):
        if rank[groups[i]] > rank[groups[i + 1]]:
            groups[i] = groups[i + 1]
    return groups


def grouped(names: list[str], groups: list[str]) -> dict[str, list[str]]:
    """``{group: [names]}`` in order of first appearance.

    Example:
        >>> grouped(["conv", "bn", "dense"], ["stem", "stem", "top"])
        {'stem': ['conv', 'bn'], 'top': ['dense']}
    """
    out: dict[str, list[str]] = {}
    for name, group in zip(names, groups, strict=True):
        out.setdefault(group, []).append(name)
    return out
