"""The figures of a benchmark run (waha_db.checks.bench): what each measure found, as `--json` gives it."""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Latency:
    median_ms: float
    p99_ms: float


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the ratios of windows measured side by side (the same round), so load from elsewhere cancels out."""
    ratios = [
        numerator / denominator for numerator, denominator in zip(numerators, denominators, strict=True) if denominator
    ]
    return statistics.median(ratios) if ratios else 0.0


@dataclass
class UserSelection:
    """The selection for one measured user: the function against its own query."""

    user_servers: int
    function_windows: list[float]  # calls/s of each window, in round order
    query_windows: list[float]
    function_server_side: Latency
    query_server_side: Latency
    rows_read: int  # rows of waha_servers one call reads under the generic plan
    rows_bound: int  # the user's active servers at its best level and above, + 1: the chosen row, read again

    @property
    def function_calls_per_second(self) -> float:
        return statistics.median(self.function_windows)

    @property
    def query_calls_per_second(self) -> float:
        return statistics.median(self.query_windows)

    @property
    def function_vs_query(self) -> float:
        return paired_ratio(self.function_windows, self.query_windows)


@dataclass
class TableSelection:
    table_servers: int
    select_1_windows: list[float]
    users: list[UserSelection] = field(default_factory=list)

    @property
    def select_1_calls_per_second(self) -> float:
        return statistics.median(self.select_1_windows)

    def user(self, servers: int) -> UserSelection:
        return next(measure for measure in self.users if measure.user_servers == servers)


@dataclass
class AllocationMeasure:
    clients: int
    users: int
    flow: str
    allocations: int
    seconds: float
    over_allocated: int  # sessions placed beyond max_sessions
    counter_above_max: int  # sum of sessions_ativas beyond max_sessions
    counters_off: int  # servers whose sessions_ativas differs from the sessions occupying them

    @property
    def allocations_per_second(self) -> float:
        return self.allocations / self.seconds if self.seconds else 0.0


@dataclass
class Goal:
    name: str
    wanted: str
    measured: str
    met: bool


@dataclass
class LoadAverage:
    """The 1-minute load average, sampled before every measured window."""

    samples: list[float] = field(default_factory=list)

    def sample(self) -> None:
        try:
            self.samples.append(os.getloadavg()[0])
        except OSError:
            pass

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {"median": statistics.median(self.samples), "min": min(self.samples), "max": max(self.samples)}


@dataclass
class BenchResult:
    machine: dict[str, Any]  # cpus, cpu_model, python, postgresql
    sizes: dict[str, Any]  # the options the run measured at (waha_db.checks.bench.BenchOptions)
    load_average: dict[str, float] = field(default_factory=dict)
    tables: list[TableSelection] = field(default_factory=list)
    plan: str = ""
    allocation: list[AllocationMeasure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for table, table_row in zip(self.tables, data["tables"], strict=True):
            table_row["select_1_calls_per_second"] = round(table.select_1_calls_per_second, 1)
            for measure, row in zip(table.users, table_row["users"], strict=True):
                row["function_calls_per_second"] = round(measure.function_calls_per_second, 1)
                row["query_calls_per_second"] = round(measure.query_calls_per_second, 1)
                row["function_vs_query"] = round(measure.function_vs_query, 3)
        for allocation, row in zip(self.allocation, data["allocation"], strict=True):
            row["allocations_per_second"] = round(allocation.allocations_per_second, 1)
        return data


def ratio_or_zero(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
