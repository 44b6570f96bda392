"""A run's log at its environment's log level (the runtime policy's `log_level`): development
stages log verbosely (DEBUG: limits, batches, connections), production tersely (INFO and above).
The lines are masked where they leave the executor (services._finish), like every other output."""

from django.utils import timezone

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


class RunLog:
    """`log(message, level="INFO")`: keeps the line when `level` reaches the threshold."""

    def __init__(self, lines: list[str], level: str | None = "INFO"):
        self.lines = lines
        self.threshold = LEVELS.get(level or "INFO", LEVELS["INFO"])

    def __call__(self, message: str, level: str = "INFO") -> None:
        if LEVELS[level] >= self.threshold:
            self.lines.append(f"{timezone.now():%H:%M:%S} {level:<7} {message}")

    def text(self) -> str:
        return "\n".join(self.lines)
