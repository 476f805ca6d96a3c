"""What a completion is made of, dialect aside: the fill-in-the-middle prompt, the
output rules, what is remembered, and who supersedes whom.

    fim        FIM families and prompts, context trimming (`plan_fim`)
    output     stop sequences, FIM tokens, Copilot's indentation rule, on a stream
    cache      the completion cache and typing-through memory (`CompletionMemory`)
    models     model names, aliases and defaults; the template cache
    supersede  groups, and a newer request cancelling an older one

The flow that uses them for every dialect is gateway/generation.py.
"""

from __future__ import annotations

from gateway.completion.cache import Completed, CompletionMemory, deterministic, fingerprint
from gateway.completion.fim import (
    FimFamily,
    custom_family,
    detect_family,
    family_by_name,
    plan_fim,
    template_supports_suffix,
)
from gateway.completion.models import TemplateCache, default_model, fim_overrides, resolve_model
from gateway.completion.output import OutputRules, PassThrough, TextStage, copilot_rules
from gateway.completion.supersede import GROUP_HEADER, Supersessions, Ticket, group_for

__all__ = [
    "GROUP_HEADER",
    "Completed",
    "CompletionMemory",
    "FimFamily",
    "OutputRules",
    "PassThrough",
    "Supersessions",
    "TemplateCache",
    "TextStage",
    "Ticket",
    "copilot_rules",
    "custom_family",
    "default_model",
    "detect_family",
    "deterministic",
    "family_by_name",
    "fim_overrides",
    "fingerprint",
    "group_for",
    "plan_fim",
    "resolve_model",
    "template_supports_suffix",
]
