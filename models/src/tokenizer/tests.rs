//! Unit tests of the tokenizer, chat template and tiny tokenizer.
