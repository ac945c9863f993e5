"""agentsync: a synchronous, thread-based runtime for LLM agent tools.

An agent run ends: a hung tool becomes a timeout the model can read, two tools
cannot deadlock on their locks, and a script still exits when its work is done.
"""

from __future__ import annotations

from ._process import ProcessTimeout, ProcessToolError, start_process_pool
from .agent import RunResult, ToolCallRecord, Usage, run_agent
from .batch import (
    BatchOutputInUse,
    BatchReport,
    DuplicateItemError,
    agent_worker,
    item_id,
    run_batch,
)
from .callbacks import callback_tool
from .context import ToolContext
from .errors import (
    AgentRunError,
    AgentSyncError,
    APIReplyError,
    LockError,
    LockOrderError,
    LockTimeout,
    LockUsageError,
    PlanError,
    RateLimited,
    RepeatedToolFailure,
    RunDeadlineExceeded,
    RuntimeClosedError,
    ToolCancelled,
    ToolDefinitionError,
    ToolError,
    ToolInterrupted,
    TruncatedToolUse,
    TurnLimitExceeded,
    UnknownToolError,
)
from .executor import CallAbandoned, ExecutorOverloaded, ExecutorStats, ToolExecutor
from .locks import (
    LockBackend,
    LockHolder,
    LockInversion,
    LockRegistry,
    LockSnapshot,
    LockStatistics,
)
from .logs import configure_logging
from .plans import Plan, Step, plan_tool, validate_plan
from .retry import Retry
from .runtime import PendingCall, Runtime, RuntimeStats
from .scheduler import PlanReport, StepResult, run_plan
from .tools import Outcome, Tool, ToolCall, tool
from .watchdog import StuckCall, Watchdog, WatchdogStatistics, WatchdogUsageError

__version__ = "0.1.0"

__all__ = [
    "APIReplyError",
    "AgentRunError",
    "AgentSyncError",
    "BatchOutputInUse",
    "BatchReport",
    "CallAbandoned",
    "DuplicateItemError",
    "ExecutorOverloaded",
    "ExecutorStats",
    "LockBackend",
    "LockError",
    "LockHolder",
    "LockInversion",
    "LockOrderError",
    "LockRegistry",
    "LockSnapshot",
    "LockStatistics",
    "LockTimeout",
    "LockUsageError",
    "Outcome",
    "PendingCall",
    "Plan",
    "PlanError",
    "PlanReport",
    "ProcessTimeout",
    "ProcessToolError",
    "RateLimited",
    "RepeatedToolFailure",
    "Retry",
    "RunDeadlineExceeded",
    "RunResult",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeStats",
    "Step",
    "StepResult",
    "StuckCall",
    "Tool",
    "ToolCall",
    "ToolCallRecord",
    "ToolCancelled",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolExecutor",
    "ToolInterrupted",
    "TruncatedToolUse",
    "TurnLimitExceeded",
    "UnknownToolError",
    "Usage",
    "Watchdog",
    "WatchdogStatistics",
    "WatchdogUsageError",
    "agent_worker",
    "callback_tool",
    "configure_logging",
    "item_id",
    "plan_tool",
    "run_agent",
    "run_batch",
    "run_plan",
    "start_process_pool",
    "tool",
    "validate_plan",
]
