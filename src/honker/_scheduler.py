"""Compatibility path: the reference keeps the scheduler in ``honker._scheduler``."""

from .scheduler import CronSchedule, Scheduler, crontab, every_s

__all__ = ["CronSchedule", "Scheduler", "crontab", "every_s"]
