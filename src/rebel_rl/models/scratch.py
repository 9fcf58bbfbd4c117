"""Models trained from scratch: `scratch:small` / `scratch:medium`, a small Llama with a word-level
tokenizer.

The tokenizer is trained (with the `tokenizers` library) on the dataset's own text: one token per
word, punctuation mark or whitespace run, split as GPT-2 splits text (a word keeps its leading
space, e.g. "Ġcat"). Byte-level pre-tokenization makes decode(encode(text)) reproduce the text
exactly for words seen in training (unseen words become <unk>, dropped when decoding), so sampled
completions decode to readable words with their spaces, and a reward model reading prompt +
completion sees the same tokens as in its training data.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..stage_configs import SCRATCH_PREFIX, is_scratch, scratch_size  # noqa: F401 (re-exported)

# Llama shapes; tied input/output embeddings keep the (word-level, so large) vocabulary cheap.
SCRATCH_SIZES: dict[str, dict[str, int]] = {
    "small": {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_attention_heads": 4,
    },
    "medium": {
        "num_hidden_layers": 4,
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_attention_heads": 4,
    },
}
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
# Conversational prompts: BOS/EOS also delimit the turns, so an assistant turn ends with the model's
# EOS.
CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)


def corpus_text(prompt, completion: str) -> str:
    """The text a word-level tokenizer should learn from one example (conversational prompts as the
    chat template lays them out: role, newline, content)."""
    if isinstance(prompt, str):
        return prompt + completion
    turns = "".join(f"{m['role']}\n{m['content']}\n" for m in prompt)
    return f"{turns}assistant\n{completion}\n"


def train_word_tokenizer(
    texts: Iterable[str], vocab_size: int, context_length: int
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with pad/unk/bos/eos and a chat template, trained on `texts`; it
    prepends BOS to every text encoded with special tokens (a fixed first token steadies tiny
    models' attention)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[PAD, UNK, BOS, EOS],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=context_length,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_scratch_model(
    size: str, tokenizer: PreTrainedTokenizerFast, context_length: int
) -> LlamaForCausalLM:
    """A randomly initialised Llama of the given size for `tokenizer`, with a generation config that
    names its EOS and pad tokens (what `rebel train` and `generate` read)."""
    shape = SCRATCH_SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=shape["num_attention_heads"],
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model
