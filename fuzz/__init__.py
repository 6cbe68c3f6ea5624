"""Coverage-guided fuzzing of nitrokit's parsers, decoders and handlers (atheris); see docs/fuzzing.md."""
