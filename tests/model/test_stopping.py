"""The stopping signal: the share of changed pool predictions, and when it says more labels will not help."""
from __future__ import annotations

from model.stopping import changed_share, stop_signal


def test_changed_share_compares_the_documents_in_both():
    before = {1: "ham", 2: "spam", 3: "ham", 4: "ham"}
    after = {2: "ham", 3: "ham", 4: "ham", 5: "spam"}  # 1 was labelled meanwhile, 5 is new
    assert changed_share(before, after) == (1 / 3, 3)
    assert changed_share({}, after) == (None, 0)
    assert changed_share({1: ("a", "b")}, {1: ("a",)}) == (1.0, 1)


def test_stop_needs_every_one_of_the_last_rounds_under_the_threshold():
    def rounds(*changed):
        return [{"version": i, "labels": 10 * i, "changed": c} for i, c in enumerate(changed, 1)]

    assert not stop_signal([], 3, 0.01)["suggested"]
    assert "0 of 3 rounds" in stop_signal([], 3, 0.01)["reason"]
    assert not stop_signal(rounds(None, 0.005, 0.0), 3, 0.01)["suggested"]  # a first model: not measured
    on = stop_signal(rounds(0.2, 0.05, 0.009, 0.0, 0.004), 3, 0.01)
    assert on["suggested"] and on["recent"] == [0.009, 0.0, 0.004] and on["labels"] == 50
    assert "under 1.0%" in on["reason"]
    off = stop_signal(rounds(0.0, 0.0, 0.02), 3, 0.01)
    assert not off["suggested"] and "up to 2.0%" in off["reason"]
    assert not stop_signal(rounds(0.0, 0.0), 3, 0.01)["suggested"]  # too few rounds


def test_label_values_in_messages_are_plain_python():
    import numpy as np

    from model.names import plain

    assert f"{plain(np.array(['neutral', 'pos']))}" == "['neutral', 'pos']"
    assert plain([np.str_("a"), np.int64(3), np.bool_(True), "b", 2.5]) == ["a", 3, True, "b", 2.5]
