"""Environments for multi-turn episodes (docs/multiturn.md): loading specs, guarded calls with
time-outs and failure scores, tool use, and adapters from OpenEnv and TRL. The contract they
satisfy is rebel_rl.policies.episodes.Environment; built-ins are registered by tasks/."""
from rebel_rl.environments.adapters import OpenEnvAdapter, TrlAdapter, from_openenv, from_trl
from rebel_rl.environments.guarded import (
    EnvironmentCounts,
    EnvironmentFactory,
    GuardedEnvironment,
    StepTimeout,
    call_with_timeout,
    check_messages,
    check_step_output,
    environment_factory,
)
from rebel_rl.environments.loading import (
    BUILTIN_ENVIRONMENTS,
    load_environment,
    make,
    register_environment,
)
from rebel_rl.environments.tools import (
    ToolCall,
    ToolEnvironment,
    parse_tool_calls,
    template_supports_tools,
    tool_schema,
)

__all__ = [
    "BUILTIN_ENVIRONMENTS", "EnvironmentCounts", "EnvironmentFactory", "GuardedEnvironment",
    "OpenEnvAdapter", "StepTimeout", "ToolCall", "ToolEnvironment", "TrlAdapter",
    "call_with_timeout", "check_messages", "check_step_output", "environment_factory",
    "from_openenv", "from_trl", "load_environment", "make", "parse_tool_calls",
    "register_environment", "template_supports_tools", "tool_schema",
]
