"""The stopping signal: kappa between successive models on a fixed stop set, and when it says more labels will
not help."""
from __future__ import annotations

from model.stopping import cohen_kappa, compare, is_step, stop_set, stop_signal


def test_compare_kappa_over_the_documents_both_models_decided():
    before = {"a": "ham", "b": "spam", "c": "ham", "d": "ham"}
    after = {"b": "spam", "c": "ham", "d": "spam", "e": "spam"}  # a left the stop set, e joined
    kappa, changed, n = compare(before, after)
    assert n == 3 and changed == 1 / 3 and kappa == cohen_kappa(["spam", "ham", "ham"], ["spam", "ham", "spam"])
    assert compare({}, after) == (None, None, 0)
    assert compare(before, before)[0] == 1.0


def test_stop_set_is_fixed_by_hash():
    keys = [f"doc{i}" for i in range(500)]
    chosen = stop_set(keys, 50)
    assert len(chosen) == 50 and stop_set(reversed(keys), 50) == chosen
    assert set(stop_set(keys + [f"new{i}" for i in range(10)], 50)) >= set(chosen) - set(stop_set(keys + [f"new{i}" for i in range(10)], 60))


def test_stop_needs_every_one_of_the_last_rounds_steady_and_enough_labels():
    def rounds(*kappas, step=50):
        return [{"version": i, "labels": step * i, "kappa": k} for i, k in enumerate(kappas, 1)]

    assert not stop_signal([], 3, 0.99, 100)["suggested"]
    assert "0 of 3 steps" in stop_signal([], 3, 0.99, 100)["reason"]
    assert not stop_signal(rounds(None, 0.995, 1.0), 3, 0.99, 100)["suggested"]  # a first model: not measured
    on = stop_signal(rounds(0.5, 0.9, 0.991, 1.0, 0.995), 3, 0.99, 100)
    assert on["suggested"] and on["recent"] == [0.991, 1.0, 0.995] and on["labels"] == 250
    off = stop_signal(rounds(1.0, 1.0, 0.98), 3, 0.99, 100)
    assert not off["suggested"] and "down to 0.980" in off["reason"]
    assert not stop_signal(rounds(1.0, 1.0), 3, 0.99, 100)["suggested"]  # too few rounds
    few = stop_signal(rounds(1.0, 1.0, 1.0, step=10), 3, 0.99, 100)
    assert not few["suggested"] and "under STOP_MIN_LABELS 100" in few["reason"]


def test_label_values_in_messages_are_plain_python():
    import numpy as np

    from model.names import plain

    assert f"{plain(np.array(['neutral', 'pos']))}" == "['neutral', 'pos']"
    assert plain([np.str_("a"), np.int64(3), np.bool_(True), "b", 2.5]) == ["a", 3, True, "b", 2.5]


def test_a_step_is_a_model_trained_on_growth_times_the_labels():
    assert is_step([], 10, 1.3)  # the first model
    history = [{"labels": 100}]
    assert not is_step(history, 101, 1.3) and not is_step(history, 129, 1.3) and is_step(history, 130, 1.3)
    assert not is_step(history, 90, 1.3)  # labels were deleted: no step
