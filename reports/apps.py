from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports and outcomes"

    def ready(self) -> None:
        from cohort import signals
        from reports import services, tasks  # noqa: F401 (tasks: registered, for wake-ups by name)

        # cohort announces changes of study data; the outcomes are recomputed by a worker.
        signals.data_changed.connect(services.on_data_changed, dispatch_uid="reports.wake_workers")
