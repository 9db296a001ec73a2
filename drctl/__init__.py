"""drctl: disaster-recovery and backup orchestrator for hospital PACS."""

__version__ = "0.1.0"
