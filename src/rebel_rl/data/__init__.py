"""Prompt datasets and prompt formatting."""
from rebel_rl.data.prompts import is_conversational, load_prompt_dataset, prompt_to_text

__all__ = ["is_conversational", "load_prompt_dataset", "prompt_to_text"]
