from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared"))
BBC_DIR = SHARED / "data" / "tagtog_bbc_news"
SMS_CSV = SHARED / "data" / "sms_spam" / "sms_spam.csv"
