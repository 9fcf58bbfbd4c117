"""The built-in task every comparison runs on (docs/summarization_task.md): its datasets and judge
rewards."""

TASK = "builtin:tldr"
SFT_DATA = "builtin:tldr_sft"
PREFERENCES = "builtin:tldr_preferences"
JUDGE = ["tldr_win_rate", "tldr_judge"]
