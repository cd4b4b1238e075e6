"""Settings: the one place that reads the environment. Library code gets values through constructors.

Every setting is listed in .env.example. ``Settings.from_env`` reads ``os.environ`` (entry points load ``.env``
with python-dotenv first); tests build ``Settings(...)`` directly.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from annotation_client import platform_class
from annotation_client.labelstudio import OWNER as LABELSTUDIO_OWNER  # noqa: F401 - kept for callers
from model.names import BATCH_MODES, CHECKPOINT_FAMILIES, FAMILIES, PRELABEL_MODES, STRATEGIES

PRIMARY_METRICS = ("f1_macro", "f1_micro", "f1_weighted", "accuracy", "mcc", "f1")


def _bool(v: str) -> bool:
    if v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if v.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {v!r}")


@dataclass(frozen=True)
class ProjectSpec:
    """A project prelabel serves: ``owner/name`` and optionally the document label to learn (by name)."""

    platform: str
    owner: str
    name: str
    label: str = ""

    @classmethod
    def parse(cls, spec: str, platform: str = "tagtog") -> "ProjectSpec":
        """``spec`` as the platform writes its projects (tagtog ``owner/name[:label]``, Label Studio
        ``<id>[:<Choices name>]``)."""
        return cls(platform, *platform_class(platform).parse_project_spec(spec))


# the settings template: at the top of the clone; an installed package carries it as web/env.example (a link to it)
ENV_EXAMPLE = next((p for p in (Path(__file__).resolve().parent / ".env.example",
                                Path(__file__).resolve().parent / "web" / "env.example") if p.exists()),
                   Path(__file__).resolve().parent / ".env.example")
# The credentials production mode requires; (setting, needed when) with minimum lengths for the ones prelabel's
# operator chooses (platform credentials are whatever the platform issued).
_OWN_SECRETS = ("api_token", "admin_token", "metrics_token")
_WEAK = {"changeme", "change-me", "secret", "password", "admin", "token", "test", "example", "prelabel"}
MIN_SECRET_CHARS = 16


def example_values(path: Path = ENV_EXAMPLE) -> dict[str, set[str]]:
    """Every value .env.example shows for a setting, live (``KEY=v``) or as an example (``# example: KEY=v``)."""
    out: dict[str, set[str]] = {}
    if path.exists():
        for m in re.finditer(r"(?m)^\s*#?\s*(?:example:\s*)?([A-Z][A-Z0-9_]*)=(\S[^\n]*?)\s*$", path.read_text()):
            out.setdefault(m.group(1), set()).add(m.group(2))
    return out


# names read from the environment besides the settings below: gunicorn's (web/gunicorn_conf.py) and libraries'
OTHER_NAMES = {"BIND", "WEB_CONCURRENCY", "WEB_THREADS", "GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR",
               "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES", "KERAS_BACKEND"}


def known_names() -> set[str]:
    """Every name prelabel reads from the environment (its settings, upper-case, and OTHER_NAMES)."""
    return {f.name.upper() for f in fields(Settings) if f.name != "extra"} | OTHER_NAMES


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # a QUEUE_URL naming Redis (worker/jobs.make_huey)


@dataclass(frozen=True)
class Settings:
    prelabel_env: str = "development"  # production: refuse to start without credentials or with example values
    # storage and queue
    instance_path: str = "instance"
    database_url: str = ""  # default: sqlite file in instance_path
    queue_url: str = ""  # empty: Huey on a SQLite file in instance_path; redis://... for RedisHuey
    redis_url: str = ""  # the same as QUEUE_URL=redis://...; QUEUE_URL wins when both are set
    # web
    webhook_username: str = ""  # when set, webhooks need these HTTP Basic credentials
    webhook_password: str = ""
    api_token: str = ""  # when set, reading /api/v1 needs "Authorization: Bearer <API_TOKEN>"
    admin_token: str = ""  # calls that change state (retrain, promote, retry) need it; empty = refused
    max_costly_reads: int = 1  # next / download at once per web process (the rest 503 + Retry-After)
    max_body_bytes: int = 1 << 20  # larger request bodies are refused with 413 (tagtog webhooks, API)
    labelstudio_max_body_bytes: int = 64 << 20  # Label Studio's TASKS_CREATED carries every imported task
    # what the worker accepts from a platform: a document over either fails its event with the reason and is
    # never stored (the body is read no further than the limit). 10 MiB: what tagtog's cloud takes per file (its
    # on-premises edition, 50 MB); storing a 10 MB text took the worker +9 to +29 MB (bench.limits --mb 10)
    max_text_bytes: int = 10 << 20  # a document's text (UTF-8); models read its first few hundred words
    max_annotation_bytes: int = 10 << 20  # its annotations: tagtog ann.json, Label Studio's annotations of a task
    ignore_api_source: bool = True  # ignore saves made through the API (prelabel's own uploads): no loop
    # tagtog
    tagtog_base_url: str = "http://127.0.0.1:8090"
    tagtog_username: str = ""
    tagtog_password: str = ""
    tagtog_projects: tuple[ProjectSpec, ...] = ()
    tagtog_member: str = "master"  # the annotation version read for ground truth and written with pre-labels
    tagtog_timeout: float = 30.0
    tagtog_retries: int = 4
    tagtog_sync_query: str = "*"  # which platform documents are imported as candidates for pre-labelling
    # Label Studio
    labelstudio_url: str = "http://127.0.0.1:8080"
    labelstudio_token: str = ""  # legacy API token, or a personal access token (JWT; refreshed automatically)
    labelstudio_projects: tuple[ProjectSpec, ...] = ()  # "12,15:sentiment": project ids[:<Choices name>]
    labelstudio_webhook_secret: str = ""  # when set, webhooks need it in labelstudio_webhook_header
    labelstudio_webhook_header: str = "X-Prelabel-Secret"
    labelstudio_timeout: float = 60.0
    labelstudio_retries: int = 4
    ml_basic_auth_user: str = ""  # when set, the ML-backend endpoints need these HTTP Basic credentials
    ml_basic_auth_pass: str = ""
    reconcile_interval_s: int = 300  # the periodic reconciliation: recover labels whose webhook was lost
    ground_truth_policy: str = "anncomplete"  # or anncomplete_or_user (see formats.tagtog.GroundTruthPolicy)
    # training
    # one candidate per family each retrain; the best on validation competes (bench.few_labels: hybrid and quick
    # lead at 100-300 labels; the RNN needs thousands)
    model_families: str = "hybrid,quick"
    model_family_every: str = "rnn:3"  # family:M trains that family every M-th retrain (others: every one)
    bert_checkpoint: str = ""  # local BERT-architecture folder (embed, bert, hybrid, fewshot); "" = MiniLM-L6
    encoder_precision: str = "auto"  # the frozen encoder's (embed, hybrid): auto | float32 | bfloat16
    embedding_cache: str = ""  # SQLite file of sentence embeddings every process shares; "" = in INSTANCE_PATH,
    # "off" = each process keeps its own in memory (model/embed_store.py)
    plateau_rounds: int = 3  # family:plateau trains once the champion gained < PLATEAU_DELTA over this many rounds
    plateau_delta: float = 0.005  # ... (in PRIMARY_METRIC on validation), at most once per PLATEAU_ROUNDS rounds
    selection_margin: float = 0.01  # within a round, the first listed family within this of the best wins
    model_ensemble: bool = True  # also try the mean of a round's candidates; kept only if it beats each one
    cold_start_labels: int = 200  # below this many labels, embed (when listed) trains every round and wins ties
    model_cell: str = "simple_rnn"  # the seed's SimpleRNN; gru or lstm learn more from long texts (news)
    model_epochs: int = 10
    model_seed: int = 42
    warm_epochs: int = 1  # a warm retrain: the last model trains this many epochs more on all labels
    warm_lr_factor: float = 0.1  # ... at this fraction of the learning rate (at 1.0 it overfits)
    full_refit_growth: float = 1.25  # full refit (new vocabulary) once labels grew by this factor
    warm_min_labels: int = 1000  # below this a full fit is cheap (~3 s) and learns more: no warm retrains
    retrain_every: int = 1  # retrain after this many new labels
    min_labels: int = 10  # no model before this many ground-truth labels (and two classes)
    cv_folds: int = 5  # cross-fitting: each family trains on K-1 folds K times (scores, calibration, choice), then
    # on every label (the model that serves)
    test_folder: str = ""  # e.g. pool/test: confirmed documents there form the test set, never used for selection
    primary_metric: str = "f1_macro"  # validation metric that decides promotion: f1_macro|f1_micro|f1_weighted|accuracy|mcc|f1
    gate_alpha: float = 0.05  # a candidate is rejected when the champion is better on the labels it never saw, at
    # this one-sided significance (exact sign test on the documents they disagree on) ...
    gate_max_drop: float = 0.10  # ... or when its cross-validated PRIMARY_METRIC is this far under the champion's
    # pre-labelling
    prelabel_k: int = 10
    # learn|review|mixed: what a pre-label batch is for (the model's next labels, the annotator's fastest confirms,
    # half each); model/names.PRELABEL_MODES
    prelabel_mode: str = "learn"
    al_strategy: str = "margin"  # random|deterministic|least_confidence|entropy|margin|maxprob|confident
    al_batch: str = "auto"  # auto|top|diverse|balanced: how a batch is formed (model/query.py); auto: top,
    # or balanced for a multilabel scheme
    al_regex: str = ""  # only documents whose text matches (RE2 search: model/patterns.py)
    al_label: str = ""  # the label maxprob looks for
    keep_rejected: int = 5  # rejected versions whose files are kept (the newest); older ones keep their metrics row
    keep_rejected_hours: float = 24.0  # ... and a rejected version's files go after this long anyway
    keep_retired: int = 3  # former champions whose files are kept for a rollback (the newest)
    audit_share: float = 0.1  # of every pre-label batch, drawn at random from the pool for the quality estimate
    cold_start_min: int = 3  # until every class has this many training labels, documents are picked at random
    stop_kappa: float = 0.98  # stopping signal: Cohen's kappa between successive models on the stop set at or above
    # this ...
    stop_rounds: int = 2  # ... in each of this many steps in a row (model/stopping.py) ...
    stop_growth: float = 1.3  # ... a step being a model trained on this many times the labels of the step before
    stop_min_labels: int = 100  # ... with at least this many labels
    stop_set: int = 1000  # documents in the fixed stop set every trained model predicts
    prelabel_folder: str = "pool"  # where corpus samples are uploaded as new documents
    corpus_path: str = ""  # optional csv (column corpus_text_column) or txt (one text per line)
    corpus_text_column: str = "text"
    sync_interval_s: int = 300
    worker_warm_up: bool = True  # a Keras family listed: import Keras (and the encoder) in the background at start
    worker_heartbeat_s: int = 10  # the worker's heartbeat in the store; missing for 3 of these = not alive
    log_level: str = "INFO"
    log_format: str = "text"  # text, or json: one JSON object per line
    metrics_token: str = ""  # GET /metrics needs "Authorization: Bearer <this>" when set
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.instance_path).resolve() / 'prelabel.db'}"

    @property
    def models_path(self) -> Path:
        return Path(self.instance_path) / "models"

    @property
    def encoder_dtype(self) -> str:
        """ENCODER_PRECISION resolved: ``auto`` is bfloat16 on a CPU with native bfloat16, else float32."""
        from model.embed import resolve_precision  # noqa: PLC0415 - reads /proc/cpuinfo, imports no Keras

        return resolve_precision(self.encoder_precision)

    @property
    def embedding_cache_path(self) -> Path | str | None:
        """Where sentence embeddings are kept for every process: None (``off``), a file, or a ``postgresql`` URL.
        Default: the database when DATABASE_URL is PostgreSQL (workers on several machines share no folder), else
        ``embeddings.sqlite3`` in the instance folder."""
        value = self.embedding_cache.strip()
        if value.lower() == "off":
            return None
        if value.startswith("postgresql"):
            return value
        if value:
            return Path(value)
        if self.database_url.startswith("postgresql"):
            return self.database_url
        return Path(self.instance_path) / "embeddings.sqlite3"

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.model_families.split(",") if f.strip())

    @property
    def family_every(self) -> dict[str, int]:
        """family -> M (every M-th round); a ``plateau`` family is in ``plateau_families`` instead."""
        out = {}
        for part in self.model_family_every.split(","):
            name, _, n = part.partition(":")
            if part.strip() and n.strip() != "plateau":
                out[name.strip()] = int(n)
        return out

    @property
    def plateau_families(self) -> tuple[str, ...]:
        """Families written ``family:plateau``: trained only when the champion has stopped improving."""
        return tuple(p.partition(":")[0].strip() for p in self.model_family_every.split(",")
                     if p.partition(":")[2].strip() == "plateau")

    @property
    def projects(self) -> tuple[ProjectSpec, ...]:
        """Every project served, on every platform."""
        return self.tagtog_projects + self.labelstudio_projects

    def required_secrets(self) -> dict[str, int]:
        """Setting -> minimum length, for the credentials production mode needs with this configuration."""
        need = {name: MIN_SECRET_CHARS for name in _OWN_SECRETS}
        if self.tagtog_projects:
            need |= {"webhook_username": 1, "webhook_password": MIN_SECRET_CHARS, "tagtog_username": 1,
                     "tagtog_password": 1}
        if self.labelstudio_projects:
            need |= {"labelstudio_webhook_secret": MIN_SECRET_CHARS, "labelstudio_token": 1,
                     "ml_basic_auth_user": 1, "ml_basic_auth_pass": MIN_SECRET_CHARS}
        return need

    def production_problems(self, examples: Mapping[str, set[str]] | None = None) -> list[str]:
        """What keeps these settings from production: missing, short or example credentials (names only: the
        values are never repeated)."""
        examples = example_values() if examples is None else examples
        problems = []
        for name, min_len in self.required_secrets().items():
            value, key = str(getattr(self, name)), name.upper()
            if not value:
                problems.append(f"{key} is not set")
            elif value in examples.get(key, set()) or value.lower() in _WEAK:
                problems.append(f"{key} is an example value (from .env.example or a well-known one)")
            elif len(value) < min_len:
                problems.append(f"{key} is shorter than {min_len} characters")
        return problems

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def unused_client_libraries(self) -> tuple[str, ...]:
        """The optional server clients these settings never use: ``redis`` unless the queue is on Redis,
        ``psycopg`` unless the database is PostgreSQL (the web workers leave them unloaded: gunicorn.conf.py)."""
        unused = []
        if not self.queue_url.startswith(REDIS_SCHEMES):
            unused.append("redis")
        if not self.db_url.startswith("postgresql"):
            unused.append("psycopg")
        return tuple(unused)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> "Settings":
        """What an entry point uses: ``.env`` of the current folder (or the nearest one above it) loaded
        (python-dotenv; the environment wins), the environment read, then ``overrides``."""
        from dotenv import dotenv_values, find_dotenv, load_dotenv  # noqa: PLC0415

        path = find_dotenv(usecwd=True)  # the folder the user runs in, not where prelabel is installed
        load_dotenv(path)
        if path:  # a typo in .env (RETRAIN_EVRY=5) would otherwise be ignored without a word
            unknown = sorted(set(dotenv_values(path)) - known_names())
            if unknown:
                logging.getLogger(__name__).warning("%s: unknown setting(s) %s ignored (see .env.example)", path,
                                                    ", ".join(unknown))
        settings = cls.from_env()
        return settings.with_(**overrides) if overrides else settings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read ``PRELABEL_``-less upper-case names (``DATABASE_URL``, ``TAGTOG_PROJECTS``...)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f.name.upper()
            if f.name == "extra" or key not in env:
                continue
            raw = env[key]
            try:
                if f.name == "tagtog_projects":
                    values[f.name] = tuple(ProjectSpec.parse(s) for s in raw.split(",") if s.strip())
                elif f.name == "labelstudio_projects":
                    values[f.name] = tuple(ProjectSpec.parse(s, "labelstudio") for s in raw.split(",") if s.strip())
                elif f.type in ("bool",):
                    values[f.name] = _bool(raw)
                elif f.type in ("int",):
                    values[f.name] = int(raw)
                elif f.type in ("float",):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"setting {key}: {exc}") from None
        if values.get("redis_url") and not values.get("queue_url"):
            values["queue_url"] = values["redis_url"]
        s = cls(**values)
        if s.ground_truth_policy not in ("anncomplete", "anncomplete_or_user"):
            raise ValueError("setting GROUND_TRUTH_POLICY must be anncomplete or anncomplete_or_user")
        if s.primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"setting PRIMARY_METRIC must be one of {', '.join(PRIMARY_METRICS)}")
        unknown = [f for f in s.families if f not in FAMILIES]
        if unknown or not s.families:
            raise ValueError(f"setting MODEL_FAMILIES must list some of {', '.join(FAMILIES)}; got {s.model_families!r}")
        try:
            every = s.family_every
        except ValueError:
            raise ValueError("setting MODEL_FAMILY_EVERY must look like rnn:3,bert:10 or bert:plateau") from None
        if any(f not in FAMILIES or n < 1 for f, n in every.items()) or any(
                f not in FAMILIES for f in s.plateau_families):
            raise ValueError(f"setting MODEL_FAMILY_EVERY must name families of {', '.join(FAMILIES)} with M >= 1 "
                             "or plateau")
        if set(CHECKPOINT_FAMILIES) & set(s.families):
            from model.checkpoint import check_checkpoint, default_checkpoint  # noqa: PLC0415 - no Keras import

            try:
                check_checkpoint(s.bert_checkpoint or default_checkpoint())
            except ValueError as exc:
                raise ValueError(f"setting BERT_CHECKPOINT: {exc}") from None
        if s.prelabel_env not in ("development", "production"):
            raise ValueError("setting PRELABEL_ENV must be development or production")
        if s.prelabel_env == "production" and (problems := s.production_problems()):
            raise ValueError("PRELABEL_ENV=production refuses to start: " + "; ".join(problems))
        if s.encoder_precision not in ("auto", "float32", "bfloat16"):
            raise ValueError("setting ENCODER_PRECISION must be auto, float32 or bfloat16")
        if s.log_format not in ("text", "json"):
            raise ValueError("setting LOG_FORMAT must be text or json")
        if s.prelabel_mode not in PRELABEL_MODES:
            raise ValueError(f"setting PRELABEL_MODE must be one of {', '.join(PRELABEL_MODES)}")
        if s.al_strategy not in STRATEGIES:
            raise ValueError(f"setting AL_STRATEGY must be one of {', '.join(STRATEGIES)}")
        if s.al_batch not in BATCH_MODES:
            raise ValueError(f"setting AL_BATCH must be one of {', '.join(BATCH_MODES)}")
        for name, (low, high) in RANGES.items():
            value = getattr(s, name)
            if value < low or (high is not None and value > high):
                raise ValueError(f"setting {name.upper()} must be " + (f"between {low} and {high}" if high is not None
                                                                        else f"at least {low}") + f", got {value}")
        if s.al_regex:
            from model.patterns import PatternError, compile_pattern  # noqa: PLC0415 - RE2 only when a pattern is set

            try:
                compile_pattern(s.al_regex)
            except PatternError as exc:
                raise ValueError(f"setting AL_REGEX: {exc}") from None
        return s


# the numeric settings not checked on their own in Settings.from_env: (lowest, highest) accepted, None unbounded. A
# zero interval or heartbeat is a busy loop, RETRAIN_EVERY=0 a retrain per event of any kind, a model with no epoch
# never trains: each is refused with its name and the range, not discovered at the first round
# Every numeric setting's range, checked at start (Settings.from_env): a value outside stops the process with one
# line naming the setting, its range and the value. Grouped as .env.example is.
RANGES: dict[str, tuple[float, float | None]] = {
    # limits
    "max_costly_reads": (1, None), "max_body_bytes": (1024, None), "labelstudio_max_body_bytes": (1024, None),
    "max_text_bytes": (1024, None), "max_annotation_bytes": (1024, None),
    # platforms
    "tagtog_timeout": (0.1, None), "labelstudio_timeout": (0.1, None), "tagtog_retries": (0, 20),
    "labelstudio_retries": (0, 20), "reconcile_interval_s": (1, None), "sync_interval_s": (1, None),
    # training
    "plateau_rounds": (1, None), "plateau_delta": (0, 1), "selection_margin": (0, 1), "cold_start_labels": (0, None),
    "model_epochs": (1, 1000), "warm_epochs": (0, 1000), "warm_lr_factor": (1e-6, 1), "full_refit_growth": (1, None),
    "warm_min_labels": (0, None), "retrain_every": (1, None), "min_labels": (2, None), "cv_folds": (2, 20),
    "gate_alpha": (0.001, 0.5), "gate_max_drop": (0, 1),
    "keep_rejected": (0, None), "keep_rejected_hours": (0, None), "keep_retired": (1, None),
    # active learning and the stop sign (STOP_GROWTH >= 1.05: models a label apart always agree)
    "prelabel_k": (0, 10_000), "cold_start_min": (1, None), "audit_share": (0, 1), "stop_growth": (1.05, None),
    "stop_rounds": (1, None), "stop_kappa": (0, 1), "stop_min_labels": (0, None), "stop_set": (10, None),
    # operations
    "worker_heartbeat_s": (1, None)}

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger once per process (web, worker, ML backend, CLI): ``fmt`` "text" for people or
    "json" (one object per line, python-json-logger) for log shippers (LOG_LEVEL, LOG_FORMAT)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.prelabel = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for h in list(root.handlers):  # ours from an earlier call; other handlers (pytest's, a host's) stay
        if getattr(h, "prelabel", False):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
