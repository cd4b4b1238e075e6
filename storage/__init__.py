"""The database, shared by the web process and the worker: ``tables`` (the ORM models and shared reads) and
``store`` (``Store``: engine, sessions, atomic operations)."""
from .store import Store
from .tables import (Base, CorpusMap, Document, Event, InFlight, Label, ModelVersion, Prediction, Project, Suspect,
                     TrainingRun, Upload,
                     Worker, current_labels, dumps_value, latest_label, text_hash, utcnow)

__all__ = ["Base", "CorpusMap", "Document", "Event", "InFlight", "Label", "ModelVersion", "Prediction", "Project", "Store", "Suspect",
           "TrainingRun", "Upload", "Worker", "current_labels", "dumps_value", "latest_label", "text_hash", "utcnow"]
