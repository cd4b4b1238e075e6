"""The main job (scripts.demo) closes the loop: the annotator reviews suggestions round after round, the champion
learns (a floor on SMS the emulator never held), a PNG is written, and the story does not depend on the pace."""
from __future__ import annotations

from pathlib import Path

from scripts import demo

from .conftest import SMS_CSV


def run(tmp_path: Path, name: str, *args: str) -> dict:
    return demo.run(demo.parser().parse_args(["--data", str(SMS_CSV), "--docs", "500", "--unseen", "600",
                                              "--workdir", str(tmp_path / name), *args]))


def test_default_families_close_the_loop(tmp_path, capsys):
    out = run(tmp_path, "default", "--confirms", "80", "--families", "hybrid,quick")  # the service's default
    printed = capsys.readouterr().out
    assert out["rounds"] >= 4 and [s[0] for s in out["story"]] == list(range(out["random_start"], 81, 10))
    assert out["reviewed_share"] >= 0.6 and out["reviewed"] >= 30
    assert out["unseen_spam_f1"] >= 0.80, out["story"]
    assert {s[2] for s in out["story"] if s[1]} <= {"hybrid", "quick", "ensemble"}
    assert Path(out["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "unseen spam F1" in printed and out["png"] in printed and "worker start to ready" in printed


def test_same_seed_same_story_at_any_pace(tmp_path):
    slow = run(tmp_path, "slow", "--confirms", "60", "--families", "quick", "--pace", "0.3")
    fast = run(tmp_path, "fast", "--confirms", "60", "--families", "quick", "--pace", "0")
    assert slow["story"] == fast["story"] and slow["rounds"] >= 3
    assert slow["unseen_spam_f1"] == fast["unseen_spam_f1"]
